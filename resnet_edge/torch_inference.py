"""Batched PyTorch inference on uint8 images, shared by validation, evaluation and export parity."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from resnet_edge.augment import normalize, to_nchw


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def torch_logits(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
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
        chunk = torch.as_tensor(images[start : start + batch_size]).to(device)
        x = normalize(to_nchw(chunk)).contiguous(memory_format=memory_format)
        with autocast_context(device, autocast_dtype):
            outputs.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)
