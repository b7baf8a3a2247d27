"""Read images for prediction from files: ``.npy`` arrays, or PNG/JPEG (and any format Pillow reads).

``.npy`` files load with ``allow_pickle=False``, so a file can never run code.
Pillow is optional (``pip install 'resnet-edge[images]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_edge.extras import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_file(path: str | Path) -> np.ndarray:
    """The array in ``path``: uint8 ``(H, W, 3)`` for an image; whatever a ``.npy`` holds.

    Raises ``ValueError`` naming the file when it cannot be read as either.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a plain numeric .npy array ({exc})") from None
    image_module = require("PIL.Image", "images", f"Reading {path.suffix or 'image'} files")
    try:
        with image_module.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (image_module.UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: neither a .npy array nor an image Pillow can read ({exc})") from None
