"""Feed images to onnxruntime's static int8 quantizer, preprocessed exactly as the predictor does.

Static quantization runs the fp32 model over calibration images to fix the range
of every activation. The images go through ``resnet_edge.runtime.preprocess.normalize``,
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

import numpy as np

from resnet_edge.calibration.selection import balanced_indices
from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE, MEAN, STD
from resnet_edge.data import Split
from resnet_edge.export.qdq import DEFAULT_CALIBRATION_IMAGES
from resnet_edge.extras import require
from resnet_edge.metadata import INPUT_NAME
from resnet_edge.runtime.images import IMAGE_SUFFIXES, image_files, read_image_file
from resnet_edge.runtime.preprocess import normalize

# onnxruntime.quantization imports the onnx package, which onnxruntime itself does not
# install; the [quantize] extra (also part of [train]) pulls it in.
CalibrationDataReader = require(
    "onnxruntime.quantization", "quantize", "Calibrating a model for int8 quantization"
).CalibrationDataReader

TRAINING_SPLIT = "train"
_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)


class CifarCalibrationReader(CalibrationDataReader):
    """Batches ``{"input": float32 (B, 3, 32, 32)}`` for ``quantize_static``, then ``None``.

    For a model exported with ``--raw-input``, set ``raw_pixels = True`` (``quantize_onnx``
    does) and the batches are the uint8 ``(B, 32, 32, 3)`` pixels instead.

    Args:
        images: uint8 ``(N, 32, 32, 3)``, pixels as stored on disk.
        batch_size: images per ``get_next()``; the last batch may be smaller.
        mean, std: normalization on the [0, 1] scale; pass the model's metadata
            values if it was trained with other statistics than CIFAR-10's.
    """

    def __init__(self, images: np.ndarray, batch_size: int = 32, *,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD, description: str | None = None) -> None:
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
        # True for a model exported with --raw-input: it takes the uint8 pixels and normalizes them itself.
        self.raw_pixels = False
        self.mean, self.std = tuple(mean), tuple(std)
        self._first, self._stop = 0, len(self)
        self._next = 0

    @classmethod
    def from_training_split(cls, split: Split, size: int = DEFAULT_CALIBRATION_IMAGES, batch_size: int = 32,
                            seed: int = 0, *,
                            mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> CifarCalibrationReader:
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
        return cls(split.images[picks], batch_size, mean=mean, std=std,
                   description=f"{len(picks)} class-balanced images of the {split.name} split "
                               f"({split.source}), seed {seed}")

    @classmethod
    def from_array(cls, path_or_array: str | Path | np.ndarray, batch_size: int = 32, *,
                   mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> CifarCalibrationReader:
        """All images of a uint8 ``(N, 32, 32, 3)`` array, or of a ``.npy`` file holding one."""
        if isinstance(path_or_array, np.ndarray):
            return cls(path_or_array, batch_size, mean=mean, std=std)
        path = Path(path_or_array)
        try:
            # allow_pickle=False: a calibration file from elsewhere can never run code.
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read as a .npy array ({exc})") from None
        if not isinstance(images, np.ndarray):  # an .npz archive
            images.close()
            raise ValueError(f"{path}: expected a .npy file with one uint8 (N, 32, 32, 3) array, got an archive")
        try:
            return cls(images, batch_size, mean=mean, std=std, description=f"{len(images)} images from {path}")
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_folder(cls, folder: str | Path, batch_size: int = 32, *,
                    mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> CifarCalibrationReader:
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
        return cls(np.stack(images), batch_size, mean=mean, std=std,
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
