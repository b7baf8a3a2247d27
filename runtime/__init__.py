"""Inference with an exported model through onnxruntime and numpy only (importing it never imports torch)."""

from resnet_edge.runtime.bench import LatencyStats, measure_latency
from resnet_edge.runtime.predictor import Predictions, Predictor
from resnet_edge.normalization import normalize

__all__ = ["LatencyStats", "Predictions", "Predictor", "measure_latency", "normalize"]
