"""Classification metrics from logits (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_report(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Top-1 accuracy (a fraction), per-class accuracy by name and the confusion matrix."""
    predictions = np.asarray(logits).argmax(axis=1)
    labels = np.asarray(labels)
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class_total = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / per_class_total[i]) if per_class_total[i] else None)
        for i, name in enumerate(class_names)
    }
    return {
        "top1": float((predictions == labels).mean()) if len(labels) else 0.0,
        "per_class": per_class,
        "images": int(len(labels)),
        "confusion": confusion.tolist(),
    }
