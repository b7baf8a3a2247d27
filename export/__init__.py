"""Checkpoint → fp32 ONNX (with metadata and a parity check), and fp32 ONNX → int8 behind an accuracy gate.

The fp32 export needs torch (the ``[train]`` extra); quantization needs only onnx
and onnxruntime (the ``[quantize]`` extra), so names are imported on first use
and ``resnet_edge.export.quantize`` works on machines without torch.
"""

from __future__ import annotations

from resnet_edge.lazy import lazy_getattr

_LAZY = {
    "ExportResult": "onnx_export",
    "export_onnx": "onnx_export",
    "model_to_onnx_bytes": "onnx_export",
    "ParityReport": "parity",
    "check_parity": "parity",
    "AccuracyGateError": "quantize",
    "QuantizationResult": "quantize",
    "quantize_onnx": "quantize",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
