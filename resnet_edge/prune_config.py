"""The pruning configuration and the fine-tuning defaults of ``resnet-edge prune``.

Torch-free, so the CLI can show its defaults without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.train_config import TrainConfig

IMPORTANCES = ("l1", "taylor")

# Fine-tuning starts from trained weights, so it needs fewer epochs and a lower peak rate than training from scratch.
FINE_TUNE_DEFAULTS = TrainConfig(epochs=10, lr=0.1)


@dataclass(frozen=True)
class PruneConfig:
    """How a model is pruned and distilled; with :class:`TrainConfig`, everything that decides the weights."""

    ratio: float | None = None  # None: the saved run's, when resuming
    importance: str = "l1"
    temperature: float = 4.0
    kd_weight: float = 0.9

    def __post_init__(self) -> None:
        if self.ratio is not None and not 0 <= self.ratio < 1:
            raise ResnetEdgeError(f"--ratio {self.ratio} is out of range; expected 0 <= ratio < 1 "
                                  "(the fraction of channels to remove from each group)")
        if self.importance not in IMPORTANCES:
            raise ResnetEdgeError(f"unknown importance {self.importance!r}; expected {' or '.join(IMPORTANCES)}")
        if self.temperature <= 0:
            raise ResnetEdgeError(f"--temperature {self.temperature} must be positive")
        if not 0 <= self.kd_weight <= 1:
            raise ResnetEdgeError(f"--kd-weight {self.kd_weight} must be in [0, 1]")
