"""Batched PyTorch inference on uint8 images, shared by validation, evaluation, the report and export parity.

Images are normalized by ``resnet_edge.normalization.normalize`` with the mean/std the
caller takes from the model's checkpoint, the same function the deployed
``Predictor`` calls, so a PyTorch number and an onnxruntime number differ only
by the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resnet_edge.normalization import normalize


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def torch_logits(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Float32 logits ``(N, classes)`` on the CPU for uint8 ``(N, 32, 32, 3)`` images."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    outputs = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(normalize(images[start : start + batch_size], mean, std))
        x = x.to(device).contiguous(memory_format=memory_format)
        with autocast_context(device, autocast_dtype):
            outputs.append(model(x).float().cpu())
    model.train(was_training)
    if len(outputs) == 1:  # a bench call at batch 64 should not pay for a copy
        return outputs[0]
    return torch.cat(outputs) if outputs else torch.empty(0)


def checkpoint_logits(path: Path, threads: int | None = None,
                      batch_size: int = 500) -> tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray]]:
    """A checkpoint's class names and a function from uint8 images to its fp32 logits (numpy).

    ``threads`` sets torch's intra-op threads (torch's own default when None).
    """
    from resnet_edge.checkpoint import class_names_of, load_checkpoint, model_from_checkpoint, normalization_of

    payload = load_checkpoint(path)
    model = model_from_checkpoint(payload)
    mean, std = normalization_of(payload)
    if threads is not None:
        torch.set_num_threads(threads)

    def logits_of(images: np.ndarray) -> np.ndarray:
        return torch_logits(model, images, mean, std, batch_size=batch_size).numpy()

    return class_names_of(payload), logits_of
