"""Train ResNet-18 on CIFAR-10 with one-cycle Nesterov SGD, entirely from in-memory uint8 tensors.

What it achieves: the whole training set lives on the device as one uint8
tensor; each step crops and flips a whole batch with tensor ops, normalizes it,
and runs the model under bf16 autocast with channels_last on CPUs that support
bf16 (AMP on CUDA). On a 2-core AVX-512-BF16 CPU that is about 185 img/s, so a
48,000-image epoch takes about 4.3 minutes; data preparation stays a few percent
of a step.

Every epoch ends with a validation pass, a line in ``RUN_DIR/metrics.jsonl``,
``RUN_DIR/last.pt`` and, when validation accuracy improves, ``RUN_DIR/best.pt``.
Checkpoints hold the model, optimizer, scheduler, grad scaler, epoch, every RNG
state (Python, numpy, torch, the data-order generator and each rank's
augmentation generator), the config, the normalization and the class names, so
``resume=True`` after a crash at any moment replays from the last completed
epoch. On the CPU with the same number of processes the resumed run ends with
bitwise the same weights as an uninterrupted one (CUDA kernels are not all
deterministic, so there it ends close, not identical).

Under ``torchrun`` the same function runs DistributedDataParallel: every rank
draws the same data order, takes its slice of each global batch (so the
learning-rate schedule does not depend on the number of processes), and rank 0
alone validates, logs and writes files.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet_edge import __version__, distributed
from resnet_edge.augment import alternating_flips, cutout, flip, normalize, random_crop, random_flip, to_nchw
from resnet_edge.checkpoint import load_checkpoint, save_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import Split
from resnet_edge.distributed import Ranks
from resnet_edge.ema import WeightAverage
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.files import atomic_write_bytes
from resnet_edge.metrics import classification_report
from resnet_edge.model import ResNet18
from resnet_edge.torch_inference import autocast_context, torch_logits
from resnet_edge.train_config import TrainConfig, saved_config

CROP_PADDING = 4
LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.jsonl"


def resolve_device(device: str, ranks: Ranks | None = None) -> torch.device:
    """The torch device for ``device``; under torchrun on CUDA, this rank's GPU."""
    ranks = ranks or Ranks()
    if device not in ("auto", "cpu", "cuda"):
        raise ResnetEdgeError(f"unknown device {device!r}; expected auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ResnetEdgeError("--device cuda was requested but torch sees no CUDA device")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if ranks.local_rank >= torch.cuda.device_count():
        raise ResnetEdgeError(
            f"LOCAL_RANK {ranks.local_rank} but torch sees {torch.cuda.device_count()} CUDA device(s); "
            "start at most one process per GPU, or pass --device cpu"
        )
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


def hardware_description(device: torch.device) -> str:
    """The GPU name, or the CPU model and core count, for run records."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores"


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None means full fp32)."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    if precision == "fp16" and device.type != "cuda":
        raise ResnetEdgeError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        raise ResnetEdgeError("this CPU has no native bf16 support; use --precision fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def one_cycle(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate multiplier per step: linear warm-up to 1, then linear decay to 0."""
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay conv and linear weights only; decaying BN scales and biases just hurts accuracy."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_generators(seed: int, rank: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The data-order generator (the same on every rank) and this rank's augmentation generator.

    The order generator lives on the CPU whatever the device, so the data order
    does not depend on the hardware and a run can resume on another device type.
    """
    order = torch.Generator()
    order.manual_seed(seed)
    augment = torch.Generator(device=device)
    augment.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return order, augment


def rng_state(order: torch.Generator, augment_states: list[torch.Tensor]) -> dict[str, Any]:
    """Every RNG the run touches, as tensors and plain values (safe for weights_only loads)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "data_order": order.get_state(),
        "augment": augment_states,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], order: torch.Generator, augment: torch.Generator,
                      ranks: Ranks) -> str | None:
    """Restore every RNG; a note when augmentation cannot continue exactly (other ranks or device type)."""
    if "data_order" not in state or "augment" not in state:
        raise ResnetEdgeError("the checkpoint's RNG state has an older layout; it cannot be resumed exactly")
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    order.set_state(state["data_order"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if len(state["augment"]) != ranks.world_size:
        return (f"the saved run had {len(state['augment'])} processes, this one {ranks.world_size}: "
                "the data order continues exactly, augmentation draws do not")
    try:
        augment.set_state(state["augment"][ranks.rank])
    except RuntimeError:  # a CPU generator state does not fit a CUDA generator, and vice versa
        return "the saved run used another device type: the data order continues exactly, augmentation draws do not"
    return None


def _check_resumable(saved: dict[str, Any], config: TrainConfig, explicit: set[str]) -> TrainConfig:
    """The saved config, after refusing explicit options that would change the run."""
    saved = saved_config(saved["config"])
    for name in sorted(explicit):
        if getattr(config, name) != getattr(saved, name):
            raise ResnetEdgeError(
                f"--{name.replace('_', '-')} {getattr(config, name)} differs from the saved run's "
                f"{getattr(saved, name)}; --resume continues the saved configuration"
            )
    return saved


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON line per epoch record, written atomically."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write_bytes(path, text.encode())


def uses_channels_last(device: torch.device, autocast_dtype: torch.dtype | None) -> bool:
    """channels_last pays off with oneDNN's bf16 kernels and on CUDA; fp32 on the CPU runs faster in NCHW."""
    return autocast_dtype is not None or device.type == "cuda"


def build_optimization(model: nn.Module, config: TrainConfig, total_steps: int, device: torch.device,
                       autocast_dtype: torch.dtype | None) -> tuple[torch.optim.SGD, Any, Any, nn.Module]:
    """Optimizer, one-cycle scheduler, grad scaler (active only for fp16) and loss of a run."""
    optimizer = torch.optim.SGD(
        parameter_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(total_steps, config.warmup_fraction))
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    return optimizer, scheduler, scaler, criterion


def prepare_batch(images: torch.Tensor, index: torch.Tensor, generator: torch.Generator,
                  memory_format: torch.memory_format, flips: torch.Tensor | None = None,
                  cutout_size: int = 0) -> torch.Tensor:
    """Gather, crop, flip, normalize and cut out one batch of uint8 NCHW images, in the model's memory format.

    ``flips`` says which images of the batch to mirror; None flips each with probability 1/2.
    """
    x = random_crop(images[index], CROP_PADDING, generator)
    x = random_flip(x, generator) if flips is None else flip(x, flips)
    x = normalize(x)
    if cutout_size:
        x = cutout(x, cutout_size, generator)
    return x.contiguous(memory_format=memory_format)


def flip_base(seed: int, n_train: int, device: torch.device) -> torch.Tensor:
    """The fixed random half of the training images mirrored in even epochs (see ``alternating_flips``)."""
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0xF11B]).generate_state(1)[0]))
    return (torch.rand(n_train, generator=generator) < 0.5).to(device)


def train_step(net: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
               autocast_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer and scheduler step; returns the (detached) loss and logits."""
    with autocast_context(x.device, autocast_dtype):
        logits = net(x)
    loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach(), logits.detach()


def _validate(model: nn.Module, val_split: Split, autocast_dtype: torch.dtype | None,
              channels_last: bool) -> tuple[float, float]:
    """Cross-entropy and top-1 of ``model`` on the validation split."""
    logits = torch_logits(model, val_split.images, autocast_dtype=autocast_dtype, channels_last=channels_last)
    loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(val_split.labels)))
    return loss, classification_report(logits.numpy(), val_split.labels, CLASS_NAMES)["top1"]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=None if enabled else True, dynamic_ncols=True)


def train(
    config: TrainConfig,
    train_split: Split,
    val_split: Split,
    out_dir: str | Path,
    device: str = "auto",
    resume: bool = False,
    explicit_options: set[str] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) a run in ``out_dir``; return the last epoch's metrics record.

    Under torchrun every rank calls this; rank 0 alone logs and writes.
    """
    ranks = distributed.ranks_from_environment()
    torch_device = resolve_device(device, ranks)
    started = distributed.start(ranks, torch_device)
    try:
        return _train(config, train_split, val_split, Path(out_dir), torch_device, ranks, resume,
                      explicit_options or set(), log if ranks.is_main else (lambda line: None),
                      progress and ranks.is_main)
    finally:
        distributed.stop(started)


def _train(config: TrainConfig, train_split: Split, val_split: Split, out_dir: Path, torch_device: torch.device,
           ranks: Ranks, resume: bool, explicit_options: set[str], log: Callable[[str], None],
           progress: bool) -> dict[str, Any]:
    last_path = out_dir / LAST
    saved = None
    if last_path.exists():
        if not resume:
            raise ResnetEdgeError(
                f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --out"
            )
        saved = load_checkpoint(last_path)
        config = _check_resumable(saved, config, explicit_options)
    elif resume:
        log(f"no {LAST} in {out_dir}: starting a new run")
    images = train_split.images[: config.limit_train]
    labels = train_split.labels[: config.limit_train]
    n_train = len(labels)
    saved_images = saved.get("train_data", {}).get("images") if saved is not None else None
    if saved_images is not None and saved_images != n_train:
        # Another split (or data set) would silently change the data order and the schedule's length.
        raise ResnetEdgeError(
            f"the run in {out_dir} trained on {saved_images} images, this data gives {n_train}; "
            "--resume needs the same training split"
        )
    batch_size = min(config.batch_size, n_train)
    if batch_size % ranks.world_size:
        raise ResnetEdgeError(
            f"the global batch of {batch_size} images must divide evenly over {ranks.world_size} processes"
        )
    if config.sync_bn and torch_device.type != "cuda":
        raise ResnetEdgeError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on the CPU)")

    autocast_dtype = resolve_precision(config.precision, torch_device)
    channels_last = uses_channels_last(torch_device, autocast_dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    order_gen, augment_gen = make_generators(config.seed, ranks.rank, torch_device)

    steps_per_epoch = n_train // batch_size  # drop the ragged last batch: tiny batches upset BatchNorm
    total_steps = steps_per_epoch * config.epochs

    model = ResNet18(len(CLASS_NAMES), zero_init_residual=config.zero_init_residual)
    if config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(torch_device, memory_format=memory_format)
    optimizer, scheduler, scaler, criterion = build_optimization(model, config, total_steps, torch_device,
                                                                 autocast_dtype)
    # Only rank 0 validates and writes, so only it keeps the average (every rank holds the same weights).
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay and ranks.is_main else None
    flips = flip_base(config.seed, n_train, torch_device) if config.alternate_flips else None

    start_epoch, history, best_top1 = 0, [], -1.0
    if saved is not None:
        model.load_state_dict(saved.get("raw_model", saved["model"]))
        if ema is not None:
            ema.load_state_dict(saved["model"], saved["ema_updates"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        note = restore_rng_state(saved["rng"], order_gen, augment_gen, ranks)
        if note:
            log(note)
        start_epoch, history, best_top1 = saved["epoch"], list(saved["metrics"]), saved["best_val_top1"]
        if ranks.is_main:
            write_metrics(out_dir / METRICS, history)  # drop lines of an epoch that died before its checkpoint
        if start_epoch >= config.epochs:
            log(f"run in {out_dir} is already complete ({start_epoch}/{config.epochs} epochs)")
            return history[-1]
        log(f"resuming {out_dir} at epoch {start_epoch + 1}/{config.epochs}")

    starts = distributed.all_gather(ranks, start_epoch)
    if len(set(starts)) != 1:
        raise ResnetEdgeError(
            f"processes would start at different epochs {starts}: the run folder {out_dir} must be on storage "
            "that every node reads"
        )
    net: nn.Module = model
    if ranks.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[torch_device.index] if torch_device.type == "cuda" else None
        )
    gpu_images = to_nchw(torch.from_numpy(images)).to(torch_device)
    gpu_labels = torch.from_numpy(labels).to(torch_device)
    precision_name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]
    processes = f" × {ranks.world_size} processes" if ranks.enabled else ""
    log(
        f"training ResNet-18 on {n_train} images ({train_split.source}), validating on {len(val_split)}; "
        f"{config.epochs} epochs × {steps_per_epoch} steps of {batch_size}, device {torch_device.type}"
        f"{processes}, {precision_name}{' + channels_last' if channels_last else ''}"
    )
    if ranks.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    hardware = hardware_description(torch_device)

    record: dict[str, Any] = {}
    for epoch in range(start_epoch, config.epochs):
        net.train()
        started = time.perf_counter()
        totals = torch.zeros(3, device=torch_device, dtype=torch.float64)  # loss sum, correct, images
        order = torch.randperm(n_train, generator=order_gen).to(torch_device)
        epoch_flips = None if flips is None else alternating_flips(flips, epoch)
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", progress)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size][ranks.rank :: ranks.world_size]
            batch_flips = None if epoch_flips is None else epoch_flips[index]
            x = prepare_batch(gpu_images, index, augment_gen, memory_format, batch_flips, config.cutout)
            y = gpu_labels[index]
            loss, logits = train_step(net, x, y, criterion, optimizer, scheduler, scaler, autocast_dtype)
            if ema is not None:
                ema.update(model)

            totals[0] += loss * len(y)
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
            bar.update(1)
            if progress and (step % 10 == 0 or step == steps_per_epoch - 1):
                seen = totals[2].item()
                bar.set_postfix(loss=f"{totals[0].item() / seen:.3f}", acc=f"{totals[1].item() / seen:.3f}",
                                img_s=f"{seen * ranks.world_size / (time.perf_counter() - started):.0f}")
        bar.close()
        distributed.all_reduce_sum(ranks, totals)
        distributed.sync_buffers(ranks, model)
        train_seconds = time.perf_counter() - started
        digest = distributed.check_in_sync(ranks, model) if ranks.enabled else None

        if ranks.is_main:
            # The weights that ship (the average, when there is one) are the ones validated and kept.
            shipped = ema.module if ema is not None else model
            val_loss, val_top1 = _validate(shipped, val_split, autocast_dtype, channels_last)
            loss_sum, correct, seen = totals.tolist()
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                "val_loss": val_loss,
                "val_acc": val_top1,
                "img_per_s": seen / train_seconds,
                "seconds": time.perf_counter() - started,
            }
            if ema is not None:
                record["val_acc_raw"] = _validate(model, val_split, autocast_dtype, channels_last)[1]
                record["seconds"] = time.perf_counter() - started
            history.append(record)
            is_best = val_top1 > best_top1
            best_top1 = max(best_top1, val_top1)
        augment_states = distributed.all_gather(ranks, augment_gen.get_state())
        if ranks.is_main:
            raw_weights = {name: t.detach().cpu() for name, t in model.state_dict().items()}
            payload = {
                # "model" holds the weights to deploy; with an average, the optimizer's own go in "raw_model".
                "model": ema.state_dict() if ema is not None else raw_weights,
                **({"raw_model": raw_weights, "ema_updates": ema.updates} if ema is not None else {}),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "rng": rng_state(order_gen, augment_states),
                "config": asdict(config),
                "normalization": {"mean": list(MEAN), "std": list(STD)},
                "class_names": list(CLASS_NAMES),
                "val_top1": val_top1,
                "best_val_top1": best_top1,
                "metrics": history,
                "train_data": {"source": train_split.source, "images": n_train, "val_images": len(val_split)},
                "world_size": ranks.world_size,
                "toolkit_version": __version__,
                "torch_version": str(torch.__version__),
                "hardware": hardware,
                "device": torch_device.type,
            }
            # best.pt before last.pt: a crash between the two re-runs this epoch on resume and rewrites both.
            if is_best:
                save_checkpoint(out_dir / BEST, payload)
            save_checkpoint(last_path, payload)
            write_metrics(out_dir / METRICS, history)
            log(
                f"epoch {epoch + 1:>3}/{config.epochs}  lr {record['lr']:.4f}  "
                f"train loss {record['train_loss']:.3f} acc {record['train_acc']:.3f}  "
                f"val loss {val_loss:.3f} acc {val_top1:.4f}{' *' if is_best else ''}  "
                + (f"(raw weights {record['val_acc_raw']:.4f})  " if ema is not None else "")
                + f"{record['img_per_s']:.0f} img/s  {record['seconds']:.0f}s"
            )
            if digest is not None:
                log(f"weights identical on all {ranks.world_size} processes (sha256 {digest[:16]})")
        distributed.barrier(ranks)
    return distributed.broadcast(ranks, record)
