"""Batch-level augmentation and normalization on uint8 tensors, on the training device.

Whole batches are cropped, flipped and cut out with tensor indexing (no
per-sample PIL transforms), so data preparation stays a small share of a
training step. Every random draw takes an explicit ``torch.Generator``, which
the trainer saves in its checkpoints so a resumed run sees the same
augmentations.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_edge.normalization import affine


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
    return flip(images, torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5)


def alternating_flips(base: Tensor, epoch: int) -> Tensor:
    """Which images to mirror in ``epoch``: a fixed random half in even epochs, the other half in odd ones.

    Every image is seen both ways every two epochs, instead of by chance (airbench's
    alternating flip), which is worth a little more than random flips on short runs.
    """
    return base if epoch % 2 == 0 else ~base


def flip(images: Tensor, mask: Tensor) -> Tensor:
    """Mirror the ``(B, C, H, W)`` images whose ``mask`` entry is True left-right."""
    return torch.where(mask[:, None, None, None], images.flip(3), images)


def cutout(images: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Zero a ``size``×``size`` square at a random centre of each normalized image (DeVries & Taylor, 2017).

    Zero after normalization is the data set's mean colour. Squares near an
    edge are clipped by it, as in the paper.
    """
    batch, _, height, width = images.shape
    device = images.device
    cy = torch.randint(0, height, (batch,), generator=generator, device=device)
    cx = torch.randint(0, width, (batch,), generator=generator, device=device)
    top, left = (cy - size // 2)[:, None], (cx - size // 2)[:, None]
    rows = torch.arange(height, device=device)[None, :]
    cols = torch.arange(width, device=device)[None, :]
    inside_rows = (rows >= top) & (rows < top + size)
    inside_cols = (cols >= left) & (cols < left + size)
    hole = inside_rows[:, :, None] & inside_cols[:, None, :]
    return images.masked_fill(hole[:, None], 0.0)


def normalize_batch(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``(B, 3, H, W)`` on any device → float32 ``(x / 255 - mean) / std``, the arithmetic of
    ``resnet_edge.normalization.affine`` (one multiply-add per pixel), so training sees what deployment feeds."""
    scale, shift = _affine_on(tuple(mean), tuple(std), images.device)
    return images.float() * scale + shift


@lru_cache(maxsize=8)
def _affine_on(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    # Built once per device: a host-to-device copy every step would synchronize a CUDA stream.
    return tuple(torch.tensor(t, device=device) for t in affine(mean, std))


def to_nchw(images_nhwc: Tensor) -> Tensor:
    """uint8 ``(N, H, W, C)`` → contiguous uint8 ``(N, C, H, W)``."""
    return images_nhwc.permute(0, 3, 1, 2).contiguous()
