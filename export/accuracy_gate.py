"""What int8 costs in accuracy: fp32 and int8 top-1 on one split, their agreement, and per-class deltas.

Both models run through the deployed ``Predictor`` (numpy + onnxruntime), so the
figures are those an application would see. The fp32 logits are computed once
and reused while the accuracy fallback tries int8 models with more and more
nodes kept in fp32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from resnet_edge.data import Split
from resnet_edge.metrics import classification_report
from resnet_edge.runtime.predictor import Predictor


@dataclass(frozen=True)
class AccuracyComparison:
    """fp32 vs int8 on ``images`` images of ``split``; accuracies are fractions, deltas are points."""

    split: str
    source: str
    images: int
    fp32_top1: float
    int8_top1: float
    agreement: float  # share of images where both models predict the same class
    per_class_delta: dict[str, float]  # int8 minus fp32 per-class accuracy, in percentage points

    @property
    def drop(self) -> float:
        """Top-1 points lost by int8 (negative when it gains)."""
        return 100.0 * (self.fp32_top1 - self.int8_top1)

    def to_dict(self) -> dict:
        return {**asdict(self), "drop_points": self.drop}

    def summary(self) -> str:
        return (f"{self.split} top-1 fp32 {100 * self.fp32_top1:.2f} %, int8 {100 * self.int8_top1:.2f} % "
                f"(drop {self.drop:+.2f} points), agreement {100 * self.agreement:.2f} % "
                f"on {self.images} images ({self.source})")


def onnx_logits(model_path: str | Path, split: Split, threads: int | None = None) -> np.ndarray:
    """Logits of an exported model over the whole split, through the runtime."""
    return Predictor(model_path, threads=threads, chunk_size=500).logits(split.images)


def compare(fp32_logits: np.ndarray, int8_logits: np.ndarray, split: Split,
            class_names: tuple[str, ...]) -> AccuracyComparison:
    """The comparison of two models' logits over ``split`` (classes without images have no delta)."""
    fp32 = classification_report(fp32_logits, split.labels, class_names)
    int8 = classification_report(int8_logits, split.labels, class_names)
    deltas = {name: round(100.0 * (int8["per_class"][name] - accuracy), 4)
              for name, accuracy in fp32["per_class"].items() if accuracy is not None}
    return AccuracyComparison(
        split=split.name,
        source=split.source,
        images=len(split),
        fp32_top1=fp32["top1"],
        int8_top1=int8["top1"],
        agreement=float((fp32_logits.argmax(1) == int8_logits.argmax(1)).mean()),
        per_class_delta=deltas,
    )
