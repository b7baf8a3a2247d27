"""``resnet-edge predict-many``: classify a whole data set on Ray Data, on this machine or on a cluster."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from resnet_edge.cli.options import json_option
from resnet_edge.extras import require
from resnet_edge.runtime.distributed import DEFAULT_BATCH_SIZE, IMAGE_COLUMN

if TYPE_CHECKING:
    import pyarrow as pa


@click.command("predict-many")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Parquet file to write: one row per input.")
@click.option("--ray-address", default=None,
              help="An existing Ray cluster: 'auto' (the one this node belongs to) or 'ray://HOST:10001'. "
                   "[default: start a local cluster on this machine]")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Actors, each with its own Predictor. [default: the cluster's CPUs / --num-cpus-per-actor]")
@click.option("--num-cpus-per-actor", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs (onnxruntime threads) per actor.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per Predictor call.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes kept per image.")
@click.option("--split", type=click.Choice(["train", "val", "trainval", "test"]), default="test", show_default=True,
              help="Which split, when INPUT is a CIFAR-10 batches folder.")
@click.option("--image-column", default=IMAGE_COLUMN, show_default=True, help="The image column of a Parquet INPUT.")
@click.option("--resize", is_flag=True, help="Scale images of another size to the model's (bilinear, "
                                             "antialiased) instead of reporting them as wrong-sized.")
@click.option("--strict", is_flag=True, help="Fail on the first unreadable or wrong-sized image instead of "
                                             "reporting it in the 'error' column.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT (only once the run has succeeded).")
@json_option
def predict_many(model: Path, input_path: Path, output: Path, ray_address: str | None, concurrency: int | None,
                 num_cpus_per_actor: int, batch_size: int, top_k: int, split: str, image_column: str, resize: bool,
                 strict: bool, overwrite: bool, as_json: bool) -> None:
    """Classify every image of INPUT with MODEL on Ray Data and write OUTPUT (Parquet).

    INPUT is a folder of images (searched recursively), a .npy/.npz uint8 (N, 32, 32, 3) array, a Parquet file
    or folder with an image column (encoded bytes or uint8 arrays) and an 'id' or 'path' column, or a CIFAR-10
    batches folder. Each output row holds the input's id (or path), class_id, class_name, probability, the
    top-k classes and an 'error' ('' when the image was read). The file is written to a temporary name and
    renamed at the end: a failed run leaves no output and an existing one untouched.
    """
    ray = require("ray", "ray", "resnet-edge predict-many")
    require("pyarrow", "ray", "resnet-edge predict-many")
    from resnet_edge.runtime import Predictor
    from resnet_edge.runtime.distributed import predict_dataset
    from resnet_edge.runtime.ray_inputs import read_input

    Predictor(model)  # a missing model or one without resnet-edge metadata fails here, in one line
    if output.exists() and not overwrite:
        raise click.ClickException(f"{output} exists; pass --overwrite to replace it once the run succeeds")
    if not input_path.exists():
        raise click.ClickException(f"input not found: {input_path}")
    started = time.perf_counter()
    _start_ray(ray, ray_address)
    ray_started = time.perf_counter() - started
    source = read_input(input_path, split=split, image_column=image_column, block_rows=batch_size)
    try:
        predictions = predict_dataset(source.dataset, str(model.resolve()), batch_size=batch_size,
                                      concurrency=concurrency, num_cpus_per_actor=num_cpus_per_actor, top_k=top_k,
                                      image_column=image_column, resize=resize)
    except ValueError as exc:  # a --top-k beyond the model's classes
        raise click.ClickException(str(exc)) from None
    log = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    log(f"classifying {source.description} on {_cluster(ray)}")
    begun = time.perf_counter()
    rows, errors = _write_atomically(predictions, output, source.rows, strict)
    seconds = time.perf_counter() - begun
    summary = {"output": str(output), "rows": rows, "errors": errors, "seconds": round(seconds, 3),
               "images_per_s": round(rows / seconds, 1) if seconds else None, "ray_start_s": round(ray_started, 3)}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {output}: {rows} rows ({errors} unreadable) in {seconds:.1f} s, {rows / seconds:.0f} "
                   f"images/s (Ray start-up {ray_started:.1f} s, not counted)")


def _start_ray(ray: Any, address: str | None) -> None:
    """Join ``address``, or start a local cluster with this machine's CPUs; Ray's own progress bars off."""
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise click.ClickException(f"cannot reach the Ray cluster at {address}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar, ours, counting rows written
    context.print_on_execution_start = False
    for name in ("ray", "ray.data"):  # Ray's lines about its executor are not this command's output, and
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failed run is reported in one line by _batches
    warnings.filterwarnings("ignore", module="ray")  # nor its advice on tuning a small input's block count


def _cluster(ray: Any) -> str:
    resources = ray.cluster_resources()
    nodes = len([node for node in ray.nodes() if node.get("Alive")])
    return f"Ray, {nodes} node{'s' * (nodes != 1)}, {int(resources.get('CPU', 0))} CPUs"


def _write_atomically(predictions: Any, output: Path, total: int | None, strict: bool) -> tuple[int, int]:
    """Stream the predictions into a temporary Parquet file beside ``output``, then rename it over ``output``.

    ``strict`` stops at the first row with an error; any failure removes the temporary file.
    """
    import pyarrow.parquet as pq
    from ray.exceptions import RayError
    from tqdm.auto import tqdm

    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    rows = errors = 0
    writer = None
    try:
        with tqdm(total=total, unit="img", desc="predict-many", dynamic_ncols=True, disable=None) as bar:
            for batch in _batches(predictions, RayError):
                if strict and (bad := np.flatnonzero(batch["error"] != "")).size:
                    raise click.ClickException(f"{batch['error'][bad[0]]} (--strict stops at the first unreadable "
                                               "image; without it, such rows get an 'error' and class_id -1)")
                table = _table(batch)
                if writer is None:
                    writer = pq.ParquetWriter(temporary, table.schema)
                writer.write_table(table)
                rows += len(table)
                errors += int((batch["error"] != "").sum())
                bar.update(len(table))
        if writer is None:
            raise click.ClickException("INPUT holds no images; nothing written")
        writer.close()
        writer = None
        os.replace(temporary, output)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(temporary):
            os.unlink(temporary)
    return rows, errors


def _batches(predictions: Any, ray_error: type[Exception]) -> Any:
    """The predictions' numpy batches; a failure inside Ray as one line (Ray's own text holds a traceback)."""
    try:
        yield from predictions.iter_batches(batch_size=None, batch_format="numpy")
    except ray_error as exc:
        raise click.ClickException(f"the Ray run failed: {_reason(str(exc))}") from None


def _reason(text: str) -> str:
    """The last ``SomeError: message`` line of a Ray error's text, else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", line)]
    return found[-1] if found else lines[0] if lines else "no reason given"


def _table(batch: dict[str, np.ndarray]) -> pa.Table:
    """A numpy batch of predictions as a plain Arrow table (lists, not Ray's tensor extension types)."""
    import pyarrow as pa

    columns = {}
    for name, values in batch.items():
        if isinstance(values, np.ndarray) and values.ndim == 2:
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
        elif isinstance(values, np.ndarray) and values.ndim > 2:
            columns[name] = pa.array(list(values.reshape(len(values), -1)))
        else:
            columns[name] = pa.array(values.tolist() if values.dtype == object else values)
    return pa.table(columns)
