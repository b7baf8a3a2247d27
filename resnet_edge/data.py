"""CIFAR-10 as uint8 arrays in memory: the official files, md5-checked, plus a built-in sample.

The full data set is read with torchvision's ``CIFAR10`` class, which verifies the
md5 of every file against the official values *before* it unpickles anything, so
a tampered or corrupt file is refused before any pickle runs. Images come back
once as a uint8 ``(N, 32, 32, 3)`` array with int64 labels and stay in memory;
there are no per-sample transforms (augmentation works on whole batches, see
``resnet_edge.augment``).

Splits:
- ``train``: the 48,000 training images left after the validation hold-out.
- ``val``: the last 200 training images of each class (2,000, class-balanced,
  deterministic); used for model selection. Small on purpose: every image held
  out is one the reference model cannot learn from, and 2,000 paired images
  still resolve the int8 gate's accuracy drop to 0.05 points.
- ``trainval``: all 50,000 training images.
- ``test``: the 10,000 official test images; only for final evaluation.

The built-in sample (``resnet_edge/sample/cifar10_sample.npz``, cut by
``scripts/make_sample.py``) holds class-balanced ``train``, ``val`` and ``test``
subsets of the same splits for the demo and fast tests. It is a plain ``.npz``
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_edge.cifar10 import CLASS_NAMES, NUM_CLASSES
from resnet_edge.errors import DataError
from resnet_edge.extras import require

DATA_ENV_VAR = "RESNET_EDGE_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/resnet-edge/cifar10")
BATCHES_FOLDER = "cifar-10-batches-py"
EXPECTED_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
SPLITS = ("train", "val", "trainval", "test")
VAL_PER_CLASS = 200
SAMPLE_PATH = Path(__file__).parent / "sample" / "cifar10_sample.npz"
SAMPLE_SOURCE = "built-in sample"

_LAYOUT_HINT = f"expected {BATCHES_FOLDER}/ with {', '.join(EXPECTED_FILES)} (the official python release)"


@dataclass(frozen=True)
class Split:
    """Images as uint8 ``(N, 32, 32, 3)`` and labels as int64 ``(N,)``."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def default_data_dir() -> Path:
    """``$RESNET_EDGE_DATA`` if set, else ``~/.cache/resnet-edge/cifar10``."""
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env) if env else DEFAULT_DATA_DIR


def batches_root(data_dir: Path) -> Path:
    """The folder that contains ``cifar-10-batches-py`` (what torchvision calls ``root``)."""
    data_dir = data_dir.expanduser()
    if data_dir.name == BATCHES_FOLDER:
        return data_dir.parent
    return data_dir


def _diagnose(batches: Path) -> str:
    """Name the missing or corrupt files of a folder torchvision refused."""
    from torchvision.datasets.utils import check_integrity
    from torchvision.datasets import CIFAR10

    if not batches.is_dir():
        return (
            f"CIFAR-10 not found: {batches} does not exist; {_LAYOUT_HINT}; point --data-dir or "
            f"${DATA_ENV_VAR} at it, or use --download"
        )
    missing = [name for name in EXPECTED_FILES if not (batches / name).is_file()]
    if missing:
        return f"CIFAR-10 at {batches} is incomplete: missing {', '.join(missing)}; {_LAYOUT_HINT}"
    md5s = dict(CIFAR10.train_list + CIFAR10.test_list)
    md5s[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    corrupt = [name for name, md5 in md5s.items() if not check_integrity(str(batches / name), md5)]
    return (
        f"CIFAR-10 at {batches} is corrupt: md5 of {', '.join(corrupt) or 'a file'} "
        f"does not match the official release; {_LAYOUT_HINT}"
    )


def _load_official(data_dir: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    datasets = require("torchvision.datasets", "train", "Reading CIFAR-10")
    root = batches_root(data_dir)
    batches = root / BATCHES_FOLDER
    if download:
        try:
            root.mkdir(parents=True, exist_ok=True)
            # torchvision reports progress on stdout; keep stdout clean for --json output.
            with contextlib.redirect_stdout(sys.stderr):
                datasets.CIFAR10(str(root), train=train, download=True)
        except OSError as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", exc)
            raise DataError(
                f"could not download CIFAR-10 into {root} ({reason}); without internet, "
                f"copy the official {BATCHES_FOLDER}/ folder there or pass --data-dir"
            ) from None
    try:
        dataset = datasets.CIFAR10(str(root), train=train, download=False)
    except RuntimeError:
        raise DataError(_diagnose(batches)) from None
    except Exception as exc:  # an md5-valid file that still fails to parse: report, don't trace
        raise DataError(f"could not read CIFAR-10 at {batches}: {exc}; {_LAYOUT_HINT}") from None
    if list(dataset.classes) != list(CLASS_NAMES):
        raise DataError(f"CIFAR-10 at {batches} has classes {dataset.classes}, expected {list(CLASS_NAMES)}")
    images = np.ascontiguousarray(dataset.data, dtype=np.uint8)
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return images, labels


def val_indices(labels: np.ndarray, per_class: int = VAL_PER_CLASS) -> np.ndarray:
    """Indices of the validation hold-out: the last ``per_class`` training images of each class."""
    picks = [np.flatnonzero(labels == c)[-per_class:] for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(picks))


def load_split(split: str, data_dir: str | Path | None = None, download: bool = False) -> Split:
    """Load one split of the full data set (see the module docstring for the splits)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split in ("train", "val"):
        train, val = load_train_val(data_dir, download)
        return train if split == "train" else val
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    images, labels = _load_official(data_dir, train=split != "test", download=download)
    return Split(split, images, labels, str(batches_root(data_dir) / BATCHES_FOLDER))


def load_train_val(data_dir: str | Path | None = None, download: bool = False) -> tuple[Split, Split]:
    """The ``train`` and ``val`` splits from one read of the training files."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    images, labels = _load_official(data_dir, train=True, download=download)
    source = str(batches_root(data_dir) / BATCHES_FOLDER)
    held_out = val_indices(labels)
    keep = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return (
        Split("train", images[keep], labels[keep], source),
        Split("val", images[held_out], labels[held_out], source),
    )


def load_sample(split: str) -> Split:
    """Load a split of the built-in class-balanced sample (no download, no torch)."""
    sample_splits = ("train", "val", "test")
    if split not in sample_splits:
        raise DataError(f"the built-in sample has splits {', '.join(sample_splits)}, not {split!r}")
    with np.load(SAMPLE_PATH, allow_pickle=False) as archive:
        images = archive[f"{split}_images"]
        labels = archive[f"{split}_labels"].astype(np.int64)
    return Split(split, images, labels, SAMPLE_SOURCE)

