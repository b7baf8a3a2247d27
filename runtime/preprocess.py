"""The one definition of preprocessing: uint8 NHWC pixels → normalized float32 NCHW.

The runtime, the calibration reader and the export parity check all call this
function; training applies the same arithmetic in torch (``resnet_edge.augment``)
from the same constants in ``resnet_edge.cifar10``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map uint8 ``(N, H, W, 3)`` images to float32 ``(N, 3, H, W)``: ``(x / 255 - mean) / std``."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"normalize expects uint8 images of shape (N, H, W, 3), "
            f"got {images.dtype} {images.shape}"
        )
    scale, shift = _affine(tuple(mean), tuple(std))
    out = np.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=np.float32)
    np.multiply(images.transpose(0, 3, 1, 2), scale, out=out, casting="unsafe")
    out += shift
    return out


@lru_cache(maxsize=8)
def _affine(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(x / 255 - mean) / std`` as one multiply-add per pixel, shaped (3, 1, 1) to broadcast over NCHW.

    Cached: building them took a third of a batch-1 image's normalization (2 of 6.5 µs, measured here).
    """
    mean_arr = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_arr = np.asarray(std, dtype=np.float32)[:, None, None]
    scale, shift = 1.0 / (255.0 * std_arr), -mean_arr / std_arr
    scale.setflags(write=False)
    shift.setflags(write=False)
    return scale, shift
