"""Calibration data for static int8 quantization: class-balanced training images, preprocessed as at inference.

Imports numpy and onnxruntime only, never torch. The reader subclasses onnxruntime's
``CalibrationDataReader``, whose module needs the ``onnx`` package as well, so names
are imported on first use: ``resnet_edge.calibration.selection`` (and the CLI's
``--help``) work on the light install.
"""

from __future__ import annotations

from resnet_edge.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "reader": ("CalibrationReader", "CifarCalibrationReader"),
    "selection": ("DEFAULT_CALIBRATION_IMAGES", "balanced_indices"),
})
