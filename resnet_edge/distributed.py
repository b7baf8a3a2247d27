"""Multi-process training under ``torchrun``: who this process is, the process group, cross-rank checks.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them training
runs as a single process and every helper here is a no-op. CPU processes talk
over gloo, CUDA processes over nccl. Rank 0 is the only one that logs and writes
files; the others train their share of each batch and wait at barriers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from resnet_edge.errors import ResnetEdgeError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_environment() -> Ranks:
    """This process's place in a torchrun launch (a single process without torchrun)."""
    try:
        return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                     int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ResnetEdgeError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None


def start(ranks: Ranks, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA) when launched by torchrun; True if this call made it."""
    if ranks.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return True
    return False


def stop(started: bool) -> None:
    """Leave the process group, if ``start`` created it (a caller's own group stays)."""
    if started and dist.is_initialized():
        # Leave together: a rank that tears gloo down while another still reads from it can abort at exit.
        dist.barrier()
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.enabled:
        dist.barrier()


def all_reduce_sum(ranks: Ranks, *tensors: torch.Tensor) -> None:
    if ranks.enabled:
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def all_gather(ranks: Ranks, value: Any) -> list[Any]:
    """``value`` from every rank, in rank order (``[value]`` for a single process)."""
    if not ranks.enabled:
        return [value]
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast(ranks: Ranks, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not ranks.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(ranks: Ranks, module: nn.Module) -> None:
    """Copy rank 0's BatchNorm statistics to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step
    every rank holds statistics updated by its own batch; this makes them equal
    before validation and checkpointing.
    """
    if ranks.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def weights_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_in_sync(ranks: Ranks, module: nn.Module) -> str:
    """The sha256 of the weights, after checking every rank holds exactly the same ones."""
    digests = all_gather(ranks, weights_digest(module))
    diverged = [rank for rank, digest in enumerate(digests) if digest != digests[0]]
    if diverged:
        raise ResnetEdgeError(f"ranks {diverged} hold other weights than rank 0; the processes diverged")
    return digests[0]
