"""Feed images to onnxruntime's static int8 quantizer, preprocessed exactly as the predictor does.

Static quantization runs the fp32 model over calibration images to fix the range
of every activation. The images go through ``resnet_edge.normalization.normalize``,
the same function the deployed predictor calls, so the ranges describe the
inputs the int8 model will actually see. CIFAR-10 calibration images come from
the ``train`` split only: calibrating on the test split would tune the int8
model to the images it is later scored on, and the ``val`` split is kept for
judging models.

    reader = CifarCalibrationReader.from_training_split(load_split("train"), size=512)
    quantize_static("model.onnx", "model.int8.onnx", reader)

To calibrate on deployment data instead, use ``from_array`` (a uint8
``(N, 32, 32, 3)`` array or ``.npy`` file) or ``from_folder`` (32x32 image files).
Imports numpy and onnxruntime only, never torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from resnet_edge.calibration.selection import DEFAULT_CALIBRATION_IMAGES, balanced_indices
from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE, MEAN, STD
from resnet_edge.data import Split
from resnet_edge.extras import require
from resnet_edge.metadata import INPUT_NAME
from resnet_edge.runtime.images import IMAGE_SUFFIXES, image_files, read_image_file
from resnet_edge.normalization import normalize

# onnxruntime.quantization imports the onnx package, which onnxruntime itself does not
# install; the [quantize] extra (also part of [train]) pulls it in.
CalibrationDataReader = require(
    "onnxruntime.quantization", "quantize", "Calibrating a model for int8 quantization"
).CalibrationDataReader

TRAINING_SPLIT = "train"
_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


class CalibrationReader(Protocol):
    """What ``resnet_edge.export.quantize_onnx`` reads calibration batches from.

    onnxruntime's ``CalibrationDataReader`` (``get_next``, then ``None`` when done),
    plus what the accuracy fallback and the int8 model's metadata need: ``rewind`` and
    ``set_range`` to run a few batches again, ``batch_size`` and ``len`` (batches), a
    ``description`` of where the images came from, and ``raw_pixels``: whether the
    batches are uint8 NHWC pixels (for a ``--raw-input`` model) rather than normalized
    float32 NCHW. :class:`CifarCalibrationReader` is the toolkit's implementation.
    """

    description: str
    batch_size: int
    raw_pixels: bool

    def get_next(self) -> dict[str, np.ndarray] | None: ...

    def rewind(self) -> None: ...

    def set_range(self, start_index: int, end_index: int) -> None: ...

    def __len__(self) -> int: ...


class CifarCalibrationReader(CalibrationDataReader):
    """Batches ``{"input": float32 (B, 3, 32, 32)}`` for ``quantize_static``, then ``None``.

    Args:
        images: uint8 ``(N, 32, 32, 3)``, pixels as stored on disk.
        batch_size: images per ``get_next()``; the last batch may be smaller.
        mean, std: normalization on the [0, 1] scale; pass the model's metadata
            values if it was trained with other statistics than CIFAR-10's.
        raw_pixels: serve the uint8 ``(B, 32, 32, 3)`` pixels themselves, for a model exported
            with ``--raw-input`` (its metadata's ``raw_input``), which normalizes inside the graph.
    """

    def __init__(self, images: np.ndarray, batch_size: int = 32, *,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD, raw_pixels: bool = False,
                 description: str | None = None) -> None:
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
                or images.shape[1:] != _SHAPE:
            got = f"{images.dtype} of shape {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"calibration images must be a uint8 array of shape (N, 32, 32, 3), got {got}")
        if len(images) == 0:
            raise ValueError("calibration images are empty (0 images); need at least 1")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each with std > 0, got mean {mean} and std {std}")
        self.images = images
        self.batch_size = int(batch_size)
        # Where the images came from, for the int8 model's metadata and the user's log.
        self.description = description or f"{len(images)} images from an array"
        self.raw_pixels = bool(raw_pixels)
        self.mean, self.std = tuple(mean), tuple(std)
        self._first, self._stop = 0, len(self)
        self._next = 0

    @classmethod
    def from_training_split(cls, split: Split, size: int = DEFAULT_CALIBRATION_IMAGES, batch_size: int = 32,
                            seed: int = 0, *, mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                            raw_pixels: bool = False) -> CifarCalibrationReader:
        """A seeded, class-balanced subset of ``size`` images of the ``train`` split."""
        if split.name == "test":
            raise ValueError(
                "calibration data must come from the training images, never the test split; "
                f"got split 'test' ({split.source}); pass the '{TRAINING_SPLIT}' split"
            )
        if split.name != TRAINING_SPLIT:
            raise ValueError(
                f"calibration data must come from the '{TRAINING_SPLIT}' split, got {split.name!r} "
                f"({split.source}); 'val' is held out for judging models and 'trainval' contains it"
            )
        picks = balanced_indices(split.labels, size, seed)
        return cls(split.images[picks], batch_size, mean=mean, std=std, raw_pixels=raw_pixels,
                   description=f"{len(picks)} class-balanced images of the {split.name} split "
                               f"({split.source}), seed {seed}")

    @classmethod
    def from_array(cls, path_or_array: str | Path | np.ndarray, batch_size: int = 32, *,
                   mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                   raw_pixels: bool = False) -> CifarCalibrationReader:
        """All images of a uint8 ``(N, 32, 32, 3)`` array, or of a ``.npy`` file holding one."""
        if isinstance(path_or_array, np.ndarray):
            return cls(path_or_array, batch_size, mean=mean, std=std, raw_pixels=raw_pixels)
        path = Path(path_or_array)
        if path.suffix.lower() != ".npy":
            raise ValueError(f"{path}: expected a .npy file with one uint8 (N, 32, 32, 3) array, or a folder of images")
        # allow_pickle=False there: a calibration file from elsewhere can never run code; every read failure is
        # one ValueError naming the file.
        images = read_image_file(path)
        try:
            return cls(images, batch_size, mean=mean, std=std, raw_pixels=raw_pixels,
                       description=f"{len(images)} images from {path}")
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_folder(cls, folder: str | Path, batch_size: int = 32, *,
                    mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                    raw_pixels: bool = False) -> CifarCalibrationReader:
        """All 32x32 image files directly in ``folder`` (by suffix, in name order); needs Pillow."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder")
        files = image_files(folder)
        if not files:
            raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        images = []
        for path in files:
            image = read_image_file(path)
            if image.shape != _SHAPE:
                # Resizing here would silently change what the model sees; the user should choose how.
                raise ValueError(
                    f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE} like the model input; resize it first"
                )
            images.append(image)
        return cls(np.stack(images), batch_size, mean=mean, std=std, raw_pixels=raw_pixels,
                   description=f"{len(images)} images from folder {folder}")

    def __len__(self) -> int:
        """Number of batches over all images (ignores ``set_range``)."""
        return -(-len(self.images) // self.batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as the model takes it, or ``None`` once the batches (of the range) are used up.

        Normalized float32 NCHW, or the uint8 NHWC pixels themselves when ``raw_pixels`` is set.
        """
        if self._next >= self._stop:
            return None
        start = self._next * self.batch_size
        self._next += 1
        pixels = self.images[start : start + self.batch_size]
        return {INPUT_NAME: pixels if self.raw_pixels else normalize(pixels, self.mean, self.std)}

    def rewind(self) -> None:
        """Start again from the first batch of the current range."""
        self._next = self._first

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve only batches ``start_index`` to ``end_index - 1``, from the first of them.

        onnxruntime calls this with ``extra_options={"CalibStridedMinMax": k}`` to
        calibrate in slices of k batches; ``set_range(0, len(reader))`` restores all.
        """
        if not 0 <= start_index < end_index:
            raise ValueError(f"need 0 <= start_index < end_index, got {start_index} and {end_index}")
        self._first, self._stop = start_index, min(end_index, len(self))
        self._next = start_index
