"""Checkpoint files: atomic writes, safe loads, and rebuilding the model from one.

A checkpoint is a dict of tensors and plain Python values (no pickled classes),
so it loads with ``torch.load(weights_only=True)``. Writes go to a temporary
file in the same folder, are fsynced, then renamed over the target: a crash or
a full disk mid-write leaves the previous file intact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.errors import CheckpointError
from resnet_edge.files import atomic_write
from resnet_edge.model import ResNet18

FORMAT = "resnet-edge-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) atomically to ``path``."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a resnet-edge checkpoint with ``weights_only=True`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # torch's weights_only refusal buries the reason on a later line.
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"cannot read checkpoint {path}: {reason}; expected a .pt file written by 'resnet-edge train'"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resnet-edge checkpoint (no '{FORMAT}' format tag)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}; "
            f"this resnet-edge reads version {FORMAT_VERSION}"
        )
    return payload


# What a deployable checkpoint keeps; optimizer, scheduler and RNG states only matter for resuming.
_INFERENCE_KEYS = ("config", "normalization", "class_names", "epoch", "val_top1", "best_val_top1", "metrics",
                   "train_data", "world_size", "toolkit_version", "torch_version", "hardware", "device")


def inference_payload(payload: dict[str, Any], dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """The weights (floating tensors cast to ``dtype``) and run facts of ``payload``, without training state.

    fp16 halves the file (22 MB for ResNet-18); ``model_from_checkpoint`` loads it back as fp32.
    """
    weights = {name: t.to(dtype) if t.is_floating_point() else t for name, t in payload["model"].items()}
    overflow = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if overflow:
        raise CheckpointError(f"weights {', '.join(overflow)} do not fit {dtype}; keep them in float32")
    return {"model": weights, **{key: payload[key] for key in _INFERENCE_KEYS if key in payload}}


def model_from_checkpoint(payload: dict[str, Any]) -> ResNet18:
    """Rebuild the fp32 model in eval mode from a loaded checkpoint."""
    class_names = payload.get("class_names", list(CLASS_NAMES))
    model = ResNet18(num_classes=len(class_names))
    state = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in payload["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit ResNet-18: {str(exc).splitlines()[0]}") from None
    return model.eval()


def normalization_of(payload: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std a checkpoint was trained with (the toolkit's constants for older files)."""
    norm = payload.get("normalization", {})
    return tuple(norm.get("mean", MEAN)), tuple(norm.get("std", STD))

