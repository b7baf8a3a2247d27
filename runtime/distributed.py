"""Bulk inference on Ray Data: the toolkit's own ``Predictor`` inside each actor, from a laptop to a cluster.

    import ray
    from resnet_edge.runtime.distributed import predict_dataset

    ds = ray.data.read_parquet("s3://frames/")                  # an "image" column: encoded bytes or uint8 arrays
    predictions = predict_dataset(ds, "model.int8.onnx", batch_size=256, top_k=3)
    predictions.write_parquet("s3://scores/")                   # every input column but the image, plus the answers

Ray Data streams the blocks (data larger than memory is fine), runs one
:class:`BatchPredictor` per actor with as many onnxruntime threads as CPUs Ray
gives the actor, and retries the batch of an actor that dies on a restarted one:
every input comes out exactly once. On a cluster the model path must be readable
by every node (shared storage, or shipped with the job's ``working_dir``).
Importing this module imports neither ray nor torch; :func:`predict_dataset`
imports ray (``pip install 'resnet-edge[ray]'``).

Each output row keeps every input column except the image one and adds
``class_id``, ``class_name``, ``probability`` (top-1), ``top_k_ids``,
``top_k_names``, ``top_k_probabilities`` and ``error``: an image that cannot be
decoded or has the wrong size (unless ``resize``) gets its reason there and class id -1: nothing is
dropped, and a caller that wants all-or-nothing checks that column (``predict-many
--strict`` stops at its first non-empty entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet_edge.extras import require
from resnet_edge.runtime.images import read_image_bytes, read_image_file
from resnet_edge.runtime.inputs import to_model_batch
from resnet_edge.runtime.predictor import Predictor

if TYPE_CHECKING:
    import ray.data

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("class_id", "class_name", "probability", "top_k_ids", "top_k_names", "top_k_probabilities",
                  "error")
NO_CLASS = -1  # the class id of a row whose image could not be read
DEFAULT_BATCH_SIZE = 256


class BatchPredictor:
    """A callable class for ``Dataset.map_batches``: one ``Predictor`` per actor, numpy batches in and out.

    The image column may hold a uint8 ``(N, H, W, 3)`` tensor, or one entry per row: encoded image bytes
    (PNG, JPEG, ``.npy``), a path to such a file (read by the actor), or a uint8 array. With ``resize``,
    images of another size are scaled to the model's (bilinear, antialiased) instead of reported.
    """

    def __init__(self, model: str, *, top_k: int = 1, threads: int | None = None,
                 image_column: str = IMAGE_COLUMN, resize: bool = False) -> None:
        self.predictor = Predictor(model, threads=threads or _actor_cpus())
        self.top_k, self.image_column, self.resize = top_k, image_column, resize
        self.size = self.predictor.metadata.image_size
        if not 1 <= top_k <= len(self.predictor.class_names):
            raise ValueError(f"top_k must be between 1 and {len(self.predictor.class_names)}, got {top_k}")

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.image_column not in batch:
            raise ValueError(f"the dataset has no image column {self.image_column!r}; it has {sorted(batch)}")
        images, errors = self._images(batch[self.image_column], batch)
        n = len(errors)
        ok = np.array([not error for error in errors], bool)
        k = self.top_k
        ids = np.full((n, k), NO_CLASS, np.int64)
        probabilities = np.zeros((n, k), np.float32)
        if ok.any():
            predictions = self.predictor.predict(images, top_k=k)
            ids[ok], probabilities[ok] = predictions.top_k_ids, predictions.top_k_probabilities
        names = self.predictor.class_names
        top_names = np.empty(n, object)
        top_names[:] = [[names[i] for i in row] if good else [] for row, good in zip(ids.tolist(), ok)]
        out = {key: value for key, value in batch.items() if key != self.image_column}
        out |= {
            "class_id": ids[:, 0],
            "class_name": np.array([names[i] if good else "" for i, good in zip(ids[:, 0].tolist(), ok)], object),
            "probability": probabilities[:, 0],
            "top_k_ids": ids,
            "top_k_names": top_names,
            "top_k_probabilities": probabilities,
            "error": np.array(errors, object),
        }
        return out

    def _images(self, column: np.ndarray, batch: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """The readable images as one uint8 batch, and per row "" or why it could not be read."""
        if isinstance(column, np.ndarray) and column.dtype == np.uint8 and column.ndim == 4:
            try:  # a tensor column: one shape for every row, so all rows are read or none
                return to_model_batch(column, self.size, self.resize), [""] * len(column)
            except ValueError as exc:
                reason = str(exc)
                return np.empty((0, self.size, self.size, 3), np.uint8), [
                    f"{name}: {reason}" for name in _row_names(batch, len(column))]
        names = _row_names(batch, len(column))
        images, errors = [], []
        for value, name in zip(column, names):
            try:
                images.append(self._one(value, name))
                errors.append("")
            except ValueError as exc:
                errors.append(str(exc))
        return (np.stack(images) if images else np.empty((0, self.size, self.size, 3), np.uint8)), errors

    def _one(self, value: Any, name: str) -> np.ndarray:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = read_image_bytes(bytes(value), name)
        elif isinstance(value, str):
            value = read_image_file(value)  # a path, read by this actor; its errors name the file
        elif value is None:
            raise ValueError(f"{name}: no image (null)")
        image = np.asarray(value)
        try:
            return to_model_batch([image], self.size, self.resize)[0]
        except ValueError as exc:
            message = str(exc).removeprefix("item 0 of the list: ")
            raise ValueError(f"{name}: {message}") from None


def predict_dataset(ds: ray.data.Dataset, model: str, *, batch_size: int = DEFAULT_BATCH_SIZE,
                    concurrency: int | None = None, num_cpus_per_actor: float = 1, top_k: int = 1,
                    image_column: str = IMAGE_COLUMN, resize: bool = False) -> ray.data.Dataset:
    """``ds`` with each row's predictions (see the module docstring), computed lazily by a pool of actors.

    Up to ``concurrency`` actors (default: as many as the cluster's CPUs allow at ``num_cpus_per_actor``
    each) each take ``batch_size`` rows at a time; an actor that dies is restarted and its batch retried.
    The pool starts with one actor and grows while input waits: a pool that took every CPU up front would
    starve the tasks that read ``ds`` (Ray's Parquet reader lists files in a task that needs a CPU), and
    on a small cluster the run would never start.
    """
    ray = require("ray", "ray", "predict_dataset")
    # A missing model, one without resnet-edge metadata or a bad top_k fails here, not in every actor.
    with Predictor(model, threads=1) as check:
        classes = len(check.class_names)
    if not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be between 1 and {classes}, got {top_k}")
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus_per_actor))
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    return ds.map_batches(
        BatchPredictor,
        fn_constructor_kwargs={"model": str(model), "top_k": top_k, "image_column": image_column,
                               "resize": resize},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=concurrency),
        num_cpus=num_cpus_per_actor,
        # Ray Data's defaults for actor pools, relied on here (tests/test_bulk_inference.py kills an actor):
        # max_restarts=-1 and max_task_retries=-1, so a dead actor is restarted and its batch retried.
    )


def _actor_cpus() -> int | None:
    """The CPUs Ray assigned this actor (None outside Ray: the Predictor then takes every core)."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except AssertionError:  # the driver, not a worker: Ray assigned it nothing
        return None
    return max(1, int(cpus)) if cpus else None


def _row_names(batch: Mapping[str, np.ndarray], n: int) -> list[str]:
    """What error messages call each row: its path, else its id, else its place in the batch."""
    for key in ("path", "id"):
        if key in batch:
            return [str(value) for value in batch[key]]
    return [f"row {i} of the batch" for i in range(n)]
