"""Checkpoint → ONNX with resnet-edge metadata and a parity check (needs the ``[train]`` extra)."""

from resnet_edge.export.onnx_export import DEFAULT_OPSET, ExportResult, export_onnx, model_to_onnx_bytes
from resnet_edge.export.parity import ParityReport, check_parity

__all__ = ["DEFAULT_OPSET", "ExportResult", "ParityReport", "check_parity", "export_onnx", "model_to_onnx_bytes"]
