"""``resnet-edge bench``: latency and throughput of an ONNX model through the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import click

from resnet_edge.cli.options import json_option, threads_option
from resnet_edge.cli.table import format_table
from resnet_edge.runtime.bench import measure_latency
from resnet_edge.runtime.predictor import Predictor


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@threads_option
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed calls first.")
@click.option("--iters", type=click.IntRange(min=1), default=100, show_default=True, help="Timed calls.")
@json_option
def bench(model: Path, batch_size: int, threads: int | None, warmup: int, iters: int, as_json: bool) -> None:
    """Time end-to-end Predictor calls on MODEL (preprocessing + onnxruntime + softmax).

    Prints p50/p90/p99/mean/min latency per call and throughput in images/s.
    """
    predictor = Predictor(model, threads=threads)
    stats = measure_latency(predictor, batch_size=batch_size, warmup=warmup, iters=iters)
    size = model.stat().st_size
    if as_json:
        click.echo(json.dumps({"model": str(model), "size_bytes": size,
                               "precision": predictor.metadata.precision, **stats.to_dict()}))
        return
    click.echo(f"{model} ({size / 1e6:.1f} MB, {predictor.metadata.precision}), {iters} calls after {warmup} warm-up")
    click.echo(format_table(
        ["batch", "threads", "p50 ms", "p90 ms", "p99 ms", "mean ms", "min ms", "images/s"],
        [(stats.batch_size, stats.threads or "all", f"{stats.p50_ms:.3f}", f"{stats.p90_ms:.3f}",
          f"{stats.p99_ms:.3f}", f"{stats.mean_ms:.3f}", f"{stats.min_ms:.3f}", f"{stats.images_per_second:.1f}")],
    ))
