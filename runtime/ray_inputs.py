"""What ``resnet-edge predict-many`` reads, as Ray Datasets with an id column and an ``image`` column.

=======================================  ===============================  ==============================
INPUT                                    id column                        image column
=======================================  ===============================  ==============================
a folder of image files (recursively)    ``path`` (relative to INPUT)     the file's path, read by the actor
a ``.npy`` (N, 32, 32, 3) uint8 array    ``id``: the row index            uint8 tensor
a ``.npz`` (first array, or ``images``)  ``id``: the row index            uint8 tensor
a CIFAR-10 ``cifar-10-batches-py``       ``id``: the row index, ``label``  uint8 tensor (md5-checked read)
a Parquet file or folder                 ``id`` or ``path``, as given      bytes or uint8 arrays, as given
=======================================  ===============================  ==============================

Arrays load with ``allow_pickle=False``. ray is imported inside the functions.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet_edge.data import BATCHES_FOLDER, batches_root
from resnet_edge.errors import DataError
from resnet_edge.runtime.distributed import IMAGE_COLUMN
from resnet_edge.runtime.images import IMAGE_SUFFIXES

if TYPE_CHECKING:
    import ray.data

ID_COLUMNS = ("id", "path")


@dataclass(frozen=True)
class Input:
    dataset: ray.data.Dataset
    id_column: str
    rows: int | None  # None when counting would mean reading the data (Parquet folders are counted by metadata)
    description: str


def read_input(path: Path, *, split: str = "test", image_column: str = IMAGE_COLUMN, block_rows: int = 256) -> Input:
    """INPUT (see the table above) as a Dataset; a one-line :class:`DataError` for anything else.

    In-memory arrays go to Ray in blocks of ``block_rows`` rows: a block is one task, so small blocks
    keep every actor busy and make a retried task (after an actor died) cheap.
    """
    import ray

    if not path.exists():
        raise DataError(f"input not found: {path}")
    if path.is_dir() and ((batches_root(path) / BATCHES_FOLDER).is_dir() or path.name == BATCHES_FOLDER):
        return _cifar(path, split, block_rows)
    if path.suffix.lower() == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
        return _parquet(path, image_column)
    if path.is_dir():
        root = path.resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}), Parquet files or "
                            "CIFAR-10 batches")
        # Paths, not bytes: each actor reads its own files (a read task would need a CPU the actors hold).
        items = [{"path": str(f.relative_to(root)), IMAGE_COLUMN: str(f)} for f in files]
        ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // block_rows)))
        return Input(ds, "path", len(files), f"{len(files)} image files under {path}")
    if path.suffix.lower() in (".npy", ".npz"):
        return _array(path, block_rows)
    raise DataError(f"cannot read {path}: expected a folder of images, a .npy/.npz uint8 (N, 32, 32, 3) array, "
                    "a Parquet file or folder, or a CIFAR-10 batches folder")


def _array(path: Path, block_rows: int) -> Input:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                images = loaded["images"] if "images" in loaded.files else loaded[loaded.files[0]]
        else:
            images = loaded
    except (ValueError, OSError, IndexError) as exc:
        raise DataError(f"cannot read {path}: {exc}; expected a uint8 (N, 32, 32, 3) array") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise DataError(f"{path} holds a {images.dtype} array of shape {images.shape}; expected uint8 (N, H, W, 3)")
    return Input(tensor_dataset(images, block_rows), "id", len(images), f"{len(images)} images from {path}")


def _cifar(path: Path, split: str, block_rows: int) -> Input:
    from resnet_edge.data import load_split

    data = load_split(split, path)
    return Input(tensor_dataset(data.images, block_rows, {"label": data.labels}), "id", len(data),
                 f"CIFAR-10 {split} split ({len(data)} images) from {data.source}")


def _parquet(path: Path, image_column: str) -> Input:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    rows = 0
    for file in [path] if path.is_file() else sorted(path.rglob("*.parquet")):
        try:  # the footers first: a file that is not Parquet is named here, not deep inside a Ray task
            rows += pq.ParquetFile(file).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {file} as Parquet: {str(exc).splitlines()[0]}") from None
    # Reading takes no CPU of its own: the actors may hold every CPU of a small cluster, and a read task
    # that waited for one would wait forever.
    free = {"num_cpus": 0}  # newer Rays name the argument and deprecate ray_remote_args; older take only that
    named = "num_cpus" in inspect.signature(ray.data.read_parquet).parameters
    ds = ray.data.read_parquet(str(path), **(free if named else {"ray_remote_args": free}))
    columns = ds.columns()
    if image_column not in columns:
        raise DataError(f"{path} has columns {columns}; expected an image column {image_column!r} "
                        "(encoded bytes or uint8 arrays; --image-column names another)")
    id_column = next((c for c in ID_COLUMNS if c in columns), None)
    if id_column is None:
        raise DataError(f"{path} has columns {columns}; expected an 'id' or 'path' column to name each row")
    return Input(ds, id_column, rows, f"{rows} rows of {path}")


def tensor_dataset(images: np.ndarray, block_rows: int, extra: dict[str, np.ndarray] | None = None
                    ) -> ray.data.Dataset:
    """Arrow tables of ``block_rows`` rows (ids, images as a tensor column, any extra columns) in Ray's object store."""
    import pyarrow as pa
    import ray
    from ray.data.extensions import ArrowTensorArray

    columns = {"id": pa.array(np.arange(len(images), dtype=np.int64)), IMAGE_COLUMN: ArrowTensorArray.from_numpy(images)}
    columns |= {name: pa.array(values) for name, values in (extra or {}).items()}
    table = pa.table(columns)
    return ray.data.from_arrow([table.slice(start, block_rows) for start in range(0, len(table), block_rows)])
