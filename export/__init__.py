"""A model from anywhere → fp32 ONNX (with metadata, parity and sanity checks), and fp32 ONNX → int8 behind an accuracy gate.

The fp32 export needs torch (the ``[train]`` extra); quantization needs only onnx
and onnxruntime (the ``[quantize]`` extra), so names are imported on first use
and ``resnet_edge.export.quantize`` works on machines without torch.
"""

from __future__ import annotations

from resnet_edge.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "gates": ("ExportResult",),
    "model_file": ("load_foreign_checkpoint", "load_model"),
    "onnx_adopt": ("adopt_onnx",),
    "onnx_export": ("export_module", "export_onnx", "model_to_onnx_bytes"),
    "parity": ("ParityReport", "check_parity"),
    "quantize": ("AccuracyGateError", "QuantizationResult", "quantize_onnx"),
})
