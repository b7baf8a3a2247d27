"""The training configuration: every setting that determines the trained weights.

Torch-free, so the CLI can show its defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_edge.errors import ResnetEdgeError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that determines the trained weights (besides the device and the number of processes)."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.15
    seed: int = 0
    limit_train: int | None = None
    zero_init_residual: bool = True
    ema_decay: float = 0.997
    cutout: int = 12
    alternate_flips: bool = True
    precision: str = "auto"
    sync_bn: bool = False

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "momentum": 0 <= self.momentum < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "limit_train": self.limit_train is None or self.limit_train >= 1,
            "precision": self.precision in PRECISIONS,
            "ema_decay": self.ema_decay == 0 or 0 < self.ema_decay < 1,
            "cutout": 0 <= self.cutout <= 32,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise ResnetEdgeError(f"invalid training option {name}={getattr(self, name)!r}")


# What runs saved before a setting existed used: resuming one of them continues its recipe, not today's defaults.
LEGACY_SETTINGS = {"ema_decay": 0.0, "cutout": 0, "alternate_flips": False}


def saved_config(values: dict) -> TrainConfig:
    """The ``TrainConfig`` a checkpoint recorded, with settings it predates filled in as they ran."""
    return TrainConfig(**{**LEGACY_SETTINGS, **values})
