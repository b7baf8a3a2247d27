"""Batch-level augmentation and normalization on uint8 tensors, on the training device.

Whole batches are cropped and flipped with tensor indexing (no per-sample PIL
transforms), so data preparation stays a small share of a training step. Every
random draw takes an explicit ``torch.Generator``, which the trainer saves in
its checkpoints so a resumed run sees the same augmentations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_edge.cifar10 import MEAN, STD


def random_crop(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Zero-pad ``(B, C, H, W)`` images by ``padding`` and cut a random H×W window from each."""
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    rows = dy[:, None] + torch.arange(height, device=device)
    cols = dx[:, None] + torch.arange(width, device=device)
    return padded[
        torch.arange(batch, device=device)[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def random_flip(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each ``(B, C, H, W)`` image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def normalize(images: Tensor) -> Tensor:
    """uint8 ``(B, 3, H, W)`` → float32 ``(x / 255 - MEAN) / STD``, as ``runtime.preprocess`` does."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def to_nchw(images_nhwc: Tensor) -> Tensor:
    """uint8 ``(N, H, W, C)`` → contiguous uint8 ``(N, C, H, W)``."""
    return images_nhwc.permute(0, 3, 1, 2).contiguous()
