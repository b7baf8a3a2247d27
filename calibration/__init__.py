"""Calibration data for static int8 quantization: class-balanced training images, preprocessed as at inference.

Imports numpy and onnxruntime only, never torch (onnxruntime's quantization
module needs the ``onnx`` package as well).
"""

from resnet_edge.calibration.reader import CifarCalibrationReader
from resnet_edge.calibration.selection import balanced_indices

__all__ = ["CifarCalibrationReader", "balanced_indices"]
