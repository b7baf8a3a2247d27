"""The checkpoint file: its schema (built and read only here), atomic writes, safe loads, the model it holds.

A checkpoint is a dict of tensors and plain Python values (no pickled classes),
so it loads with ``torch.load(weights_only=True)``. Writes go to a temporary
file in the same folder, are fsynced, then renamed over the target: a crash or
a full disk mid-write leaves the previous file intact.

The schema (format version 1):

- ``model``: the weights to deploy (the EMA average when training keeps one);
- deployment facts: ``normalization`` (``{"mean", "std"}`` on the [0, 1] pixel scale),
  ``class_names``, ``widths`` (:class:`resnet_edge.model.Widths` as a dict; absent means
  the standard ResNet-18), ``pruning`` (a pruned model's source and settings), ``config``, ``epoch``, ``val_top1``, ``best_val_top1``, ``metrics``,
  ``train_data``, ``world_size``, ``toolkit_version``, ``torch_version``, ``hardware``, ``device``;
- what only ``--resume`` needs (:class:`TrainingState`): ``optimizer``, ``scheduler``,
  ``scaler``, ``rng`` and, with an EMA, the optimizer's own weights ``raw_model`` and
  ``ema_updates``. A published checkpoint (:func:`inference_payload`) drops them.

torch is imported inside the functions that need it, so the light install can ask
:func:`is_checkpoint_path` without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_edge import __version__
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.errors import CheckpointError
from resnet_edge.files import atomic_write

if TYPE_CHECKING:
    import torch

    from resnet_edge.model import ResNet18, Widths

FORMAT = "resnet-edge-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth")

# What a deployable checkpoint keeps; optimizer, scheduler and RNG states only matter for resuming.
_INFERENCE_KEYS = ("config", "normalization", "class_names", "epoch", "val_top1", "best_val_top1", "metrics",
                   "train_data", "world_size", "toolkit_version", "torch_version", "hardware", "device",
                   "widths", "pruning")


def is_checkpoint_path(path: Path) -> bool:
    """Whether ``path`` names a PyTorch checkpoint by its suffix (``.pt``, ``.pth``)."""
    return path.suffix.lower() in CHECKPOINT_SUFFIXES


@dataclass(frozen=True)
class TrainingState:
    """What ``--resume`` needs beyond the deployed weights: every optimizer, schedule and RNG state."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]
    rng: dict[str, Any]
    raw_weights: dict[str, Any] | None = None  # the optimizer's own weights, when "model" holds an average
    ema_updates: int | None = None


def training_payload(*, weights: dict[str, Any], state: TrainingState, epoch: int, config: dict[str, Any],
                     mean: tuple[float, ...], std: tuple[float, ...], class_names: tuple[str, ...],
                     val_top1: float, best_val_top1: float, metrics: list[dict[str, Any]],
                     train_data: dict[str, Any], world_size: int, hardware: str, device: str,
                     widths: dict[str, Any] | None = None, pruning: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint of a training run after ``epoch`` epochs, in the schema above."""
    import torch

    payload = {
        "model": weights,
        "optimizer": state.optimizer,
        "scheduler": state.scheduler,
        "scaler": state.scaler,
        "epoch": epoch,
        "rng": state.rng,
        "config": config,
        "normalization": {"mean": list(mean), "std": list(std)},
        "class_names": list(class_names),
        "val_top1": val_top1,
        "best_val_top1": best_val_top1,
        "metrics": metrics,
        "train_data": train_data,
        "world_size": world_size,
        "toolkit_version": __version__,
        "torch_version": str(torch.__version__),
        "hardware": hardware,
        "device": device,
    }
    if widths is not None:
        payload["widths"] = widths
    if pruning is not None:
        payload["pruning"] = pruning
    if state.raw_weights is not None:
        payload["raw_model"], payload["ema_updates"] = state.raw_weights, state.ema_updates
    return payload


def training_state_of(payload: dict[str, Any]) -> TrainingState:
    """The resume state of a checkpoint written by :func:`training_payload`."""
    missing = [key for key in ("optimizer", "scheduler", "scaler", "rng") if key not in payload]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {', '.join(missing)}: it is a published model, not a "
                              "training run's last.pt, so it cannot be resumed")
    return TrainingState(payload["optimizer"], payload["scheduler"], payload["scaler"], payload["rng"],
                         payload.get("raw_model"), payload.get("ema_updates"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) atomically to ``path``."""
    import torch

    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a resnet-edge checkpoint with ``weights_only=True`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return check_format(read_torch_file(path), path)


def read_torch_file(path: Path, *, weights_only: bool = True,
                    expected: str = "a .pt file written by 'resnet-edge train'") -> Any:
    """``torch.load`` onto the CPU, any failure as one :class:`CheckpointError` line naming ``expected``."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # torch's weights_only refusal buries the reason on a later line.
        reason = next((line for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}; expected {expected}") from None


def check_format(payload: Any, path: Path) -> dict[str, Any]:
    """``payload`` if it is a resnet-edge checkpoint of the version this code reads."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a resnet-edge checkpoint (no '{FORMAT}' format tag); "
                              "'resnet-edge export' reads checkpoints from other code too")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}; "
            f"this resnet-edge reads version {FORMAT_VERSION}"
        )
    return payload


def inference_payload(payload: dict[str, Any], dtype: torch.dtype | None = None) -> dict[str, Any]:
    """The weights (floating tensors cast to ``dtype``, fp16 by default) and run facts of ``payload``.

    fp16 halves the file (22 MB for ResNet-18); ``model_from_checkpoint`` loads it back as fp32.
    """
    import torch

    dtype = dtype or torch.float16
    weights = {name: t.to(dtype) if t.is_floating_point() else t for name, t in payload["model"].items()}
    overflow = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if overflow:
        raise CheckpointError(f"weights {', '.join(overflow)} do not fit {dtype}; keep them in float32")
    return {"model": weights, **{key: payload[key] for key in _INFERENCE_KEYS if key in payload}}


def model_from_checkpoint(payload: dict[str, Any]) -> ResNet18:
    """Rebuild the fp32 model in eval mode from a loaded checkpoint, at the widths it records."""
    from resnet_edge.model import ResNet18

    widths = widths_of(payload)
    model = ResNet18(num_classes=len(class_names_of(payload)), widths=widths)
    state = {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in payload["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        what = "ResNet-18" if widths.is_default else f"the pruned ResNet-18 of widths {widths.to_dict()}"
        raise CheckpointError(f"checkpoint weights do not fit {what}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def widths_of(payload: dict[str, Any]) -> Widths:
    """The layer widths a checkpoint records (the standard ResNet-18's for unpruned and older files)."""
    from resnet_edge.model import Widths

    if "widths" not in payload:
        return Widths()
    try:
        return Widths.from_dict(payload["widths"])
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's widths are malformed: {exc}") from None


def normalization_of(payload: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std a checkpoint was trained with (the toolkit's constants for older files)."""
    norm = payload.get("normalization", {})
    return tuple(norm.get("mean", MEAN)), tuple(norm.get("std", STD))


def class_names_of(payload: dict[str, Any]) -> tuple[str, ...]:
    """The class names of a checkpoint's outputs, in logit order (CIFAR-10's for older files)."""
    return tuple(payload.get("class_names", CLASS_NAMES))
