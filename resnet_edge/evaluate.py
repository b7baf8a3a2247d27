"""Accuracy of a checkpoint (``.pt``, through PyTorch) or an ONNX model (through the runtime) on one split."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.checkpoint import is_checkpoint_path
from resnet_edge.data import Split
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.extras import require
from resnet_edge.metadata import ONNX_SUFFIX
from resnet_edge.metrics import classification_report
from resnet_edge.runtime.predictor import Predictor


def mirrored(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` images flipped left-right."""
    return np.ascontiguousarray(images[:, :, ::-1])


def evaluate_model(model_path: str | Path, split: Split, threads: int | None = None,
                   batch_size: int = 500, tta: bool = False, providers: Sequence[str] | None = None) -> dict[str, Any]:
    """Top-1, per-class accuracy, confusion matrix and images/s of ``model_path`` on ``split``.

    ``providers`` are the onnxruntime execution providers of an ONNX model (CPU when None).

    With ``tta``, logits are averaged over each image and its mirror image: a
    test-time measurement only, never part of an exported model.
    """
    path = Path(model_path)
    if path.suffix.lower() == ONNX_SUFFIX:
        predictor = Predictor(path, threads=threads, chunk_size=batch_size, providers=providers)
        class_names, logits_of = predictor.class_names, predictor.logits
        engine, provider = "onnxruntime", predictor.providers[0]
    elif is_checkpoint_path(path):
        if providers is not None:
            raise ResnetEdgeError(f"execution providers apply to .onnx models, which run on onnxruntime; "
                                  f"{path.name} runs on PyTorch")
        require("torch", "train", "Evaluating a .pt checkpoint")
        from resnet_edge.torch_inference import checkpoint_logits

        class_names, logits_of = checkpoint_logits(path, threads, batch_size)
        engine, provider = "torch", None
    else:
        raise ResnetEdgeError(f"cannot evaluate {path}: expected a .pt checkpoint or an .onnx model")
    started = time.perf_counter()
    logits = logits_of(split.images)
    if tta:
        logits = (logits + logits_of(mirrored(split.images))) / 2
    seconds = time.perf_counter() - started
    report = classification_report(logits, split.labels, class_names)
    return {
        "model": str(path),
        "engine": engine,
        "provider": provider,
        "split": split.name,
        "tta": tta,
        "data": split.source,
        **report,
        "seconds": seconds,
        "images_per_second": len(split) / seconds if seconds > 0 else float("inf"),
    }

