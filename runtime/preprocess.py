"""The one definition of preprocessing: uint8 NHWC pixels → normalized float32 NCHW.

The runtime, the calibration reader and the export parity check all call this
function; training applies the same arithmetic in torch (``resnet_edge.augment``)
from the same constants in ``resnet_edge.cifar10``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Map uint8 ``(N, H, W, 3)`` images to float32 ``(N, 3, H, W)``: ``(x / 255 - mean) / std``."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"normalize expects uint8 images of shape (N, H, W, 3), "
            f"got {images.dtype} {images.shape}"
        )
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    # One multiply-add per pixel instead of divide, subtract, divide.
    scale = 1.0 / (255.0 * std_arr)
    shift = -mean_arr / std_arr
    out = np.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=np.float32)
    np.multiply(images.transpose(0, 3, 1, 2), scale[:, None, None], out=out, casting="unsafe")
    out += shift[:, None, None]
    return out
