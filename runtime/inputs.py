"""Everything an application may hand the predictor, turned into one batch the model takes.

Accepted: a uint8 ``(S, S, 3)`` image, a uint8 ``(N, S, S, 3)`` batch, a
normalized float32 ``(N, 3, S, S)`` batch, a PIL image, an image file path, or a
list of images, PIL images and paths (S = the model's image size). Images of
another size are resized only when the caller asks (``resize=True``, with
Pillow's bilinear filter and antialiasing); otherwise a ``ValueError`` says what
was given, since a silent resize changes what the model sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.extras import require
from resnet_edge.runtime.images import pil_image_pixels, read_image_file


def describe_forms(size: int) -> str:
    return (f"a uint8 ({size}, {size}, 3) image, a uint8 (N, {size}, {size}, 3) batch, a normalized float32 "
            f"(N, 3, {size}, {size}) batch, a PIL image, an image file path, or a list of images or paths")


def _is_pil_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert") and hasattr(value, "size")


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    pil = require("PIL.Image", "images", "resize=True")
    resample = pil.Resampling.BILINEAR if hasattr(pil, "Resampling") else pil.BILINEAR
    return np.asarray(pil.fromarray(image).resize((size, size), resample), dtype=np.uint8)


def _one_image(value: Any, size: int, resize: bool, forms: str) -> np.ndarray:
    """A uint8 ``(size, size, 3)`` array from an array, a PIL image or a path."""
    if isinstance(value, (str, Path)):
        path = Path(value)
        image = read_image_file(path)
        where = f"{path}: "
    elif _is_pil_image(value):
        where = "PIL image: "
        try:
            image = pil_image_pixels(value)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
    elif isinstance(value, np.ndarray):
        image = value
        where = ""
    else:
        raise ValueError(f"expected {forms}; got {type(value).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}got a {image.dtype} array of shape {image.shape}; expected {forms}")
    if image.shape[:2] != (size, size):
        if not resize:
            raise ValueError(
                f"{where}image is {image.shape[1]}x{image.shape[0]}, the model takes {size}x{size}; "
                "pass resize=True to resize it (bilinear), or resize it yourself"
            )
        image = _resized(image, size)
    return image


def to_model_batch(images: Any, size: int, resize: bool = False) -> np.ndarray:
    """A uint8 ``(N, size, size, 3)`` batch, or a validated float32 ``(N, 3, size, size)`` one.

    A path may name an image file or a ``.npy`` array holding any accepted array form.
    Raises ``ValueError`` naming what was given and what is accepted.
    """
    forms = describe_forms(size)
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("got an empty list (0 images)")
        batch = []
        for index, item in enumerate(images):
            try:
                batch.append(_one_image(item, size, resize, forms))
            except ValueError as exc:
                raise ValueError(f"item {index} of the list: {exc}") from None
        return np.stack(batch)
    if isinstance(images, (str, Path)) and Path(images).suffix.lower() == ".npy":
        try:
            return to_model_batch(read_image_file(images), size, resize)
        except ValueError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith(str(Path(images))) else f"{images}: {message}") from None
    if isinstance(images, (str, Path)) or _is_pil_image(images):
        return _one_image(images, size, resize, forms)[None]
    if not isinstance(images, np.ndarray):
        raise ValueError(f"expected {forms}; got {type(images).__name__}")
    if images.dtype == np.uint8:
        if images.ndim == 3 and images.shape[2] == 3:
            return _one_image(images, size, resize, forms)[None]
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"got a uint8 array of shape {images.shape}; expected {forms}")
        if images.shape[0] == 0:
            raise ValueError("got an empty batch (0 images)")
        if images.shape[1:3] != (size, size):
            if not resize:
                raise ValueError(
                    f"got a uint8 array of shape {images.shape}: images are {images.shape[2]}x{images.shape[1]}, "
                    f"the model takes {size}x{size}; pass resize=True to resize them (bilinear)"
                )
            return np.stack([_resized(image, size) for image in images])
        return images
    if images.dtype == np.float32:
        if images.ndim != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"got a float32 array of shape {images.shape}; expected {forms}")
        if images.shape[0] == 0:
            raise ValueError("got an empty batch (0 images)")
        if not np.isfinite(images).all():
            raise ValueError("got a float32 batch that contains NaN or infinity")
        return np.ascontiguousarray(images)
    raise ValueError(f"got a {images.dtype} array of shape {images.shape}; expected {forms}")


def is_single(images: Any) -> bool:
    """Whether ``images`` is one image (not a batch or a list)."""
    if isinstance(images, (str, Path)) or _is_pil_image(images):
        return True
    return isinstance(images, np.ndarray) and images.ndim == 3


