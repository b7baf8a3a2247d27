"""Calibration data for static int8 quantization: class-balanced training images, preprocessed as at inference.

Imports numpy and onnxruntime only, never torch. The reader subclasses onnxruntime's
``CalibrationDataReader``, whose module needs the ``onnx`` package as well, so names
are imported on first use: ``resnet_edge.calibration.selection`` (and the CLI's
``--help``) work on the light install.
"""

from __future__ import annotations

from resnet_edge.lazy import lazy_getattr

_LAZY = {
    "CalibrationReader": "reader",
    "CifarCalibrationReader": "reader",
    "DEFAULT_CALIBRATION_IMAGES": "selection",
    "balanced_indices": "selection",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
