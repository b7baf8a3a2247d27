"""Choose calibration images: a seeded, class-balanced subset of labeled images.

Static int8 quantization fixes each activation's range from the images it is
shown. A subset skewed towards a few classes yields ranges that fit those
classes and clip the rest; a fixed seed makes the subset, and so the quantized
model, reproducible.
"""

from __future__ import annotations

import numpy as np

from resnet_edge.cifar10 import CLASS_NAMES, NUM_CLASSES

# 512 images calibrate the reference model as well as the whole split would (benchmarks/quantization.py).
DEFAULT_CALIBRATION_IMAGES = 512


def balanced_indices(labels: np.ndarray, size: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of ``size`` images spread as evenly as possible over the classes.

    Each class gets ``size // 10`` images; when ``size`` is not a multiple of 10 a
    seeded choice of classes gets one more. The same labels, size and seed always
    give the same indices. Raises ``ValueError`` when ``size < 1``, when a label
    is not a class id, or when a class has fewer images than its share.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            f"labels must be class ids 0..{NUM_CLASSES - 1}, got values from {labels.min()} to {labels.max()}"
        )
    if size < 1:
        raise ValueError(f"calibration size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    base, extra = divmod(size, NUM_CLASSES)
    counts = np.full(NUM_CLASSES, base)
    # Which classes get the remainder is seeded too, so no class is always favoured.
    counts[rng.permutation(NUM_CLASSES)[:extra]] += 1
    members = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
    short = [
        f"{CLASS_NAMES[c]} has {len(m)} of the {counts[c]} needed"
        for c, m in enumerate(members)
        if len(m) < counts[c]
    ]
    if short:
        raise ValueError(
            f"cannot pick {size} class-balanced images from {labels.size} labels: {'; '.join(short)}"
        )
    picks = [rng.choice(m, count, replace=False) for m, count in zip(members, counts)]
    return np.sort(np.concatenate(picks)).astype(np.int64)
