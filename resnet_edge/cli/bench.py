"""``resnet-edge bench``: latency, throughput and memory of models across engines, batch sizes, threads, streams."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import product
from pathlib import Path

import click

from resnet_edge.bench.engines import ENGINES, check_engine, default_engine, runs
from resnet_edge.bench.passes import best_of_passes
from resnet_edge.bench.rows import BenchConfig, BenchRow, with_ratios
from resnet_edge.cli.options import json_option, providers_option
from resnet_edge.cli.table import format_table
from resnet_edge.files import atomic_write_bytes
from resnet_edge.runtime.session import DEFAULT_PROVIDERS, short_provider_name


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int | None]:
    """``"1,8,64"`` → ``[1, 8, 64]``; ``None`` (threads not given) → ``[None]`` (all cores)."""
    if value is None:
        return [None]
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected positive integers separated by commas, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got {value!r}")
    return numbers


def _engine_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    engines = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise click.BadParameter(f"unknown engine {', '.join(unknown) or value!r}; expected {', '.join(ENGINES)}")
    return engines


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", "batch_sizes", default="1", show_default=True, callback=_int_list,
              help="Batch sizes, comma-separated (e.g. 1,8,64).")
@click.option("--threads", "thread_counts", default=None, callback=_int_list,
              help="Intra-op thread counts, comma-separated (e.g. 1,2). [default: all cores]")
@click.option("--streams", "stream_counts", default="1", show_default=True, callback=_int_list,
              help="Concurrent inferences a batch is split over, comma-separated (e.g. 1,2); --threads then counts "
                   "per stream. One stream per core with --threads 1 is the throughput setting for big batches.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed calls first.")
@click.option("--iters", type=click.IntRange(min=1), default=100, show_default=True, help="Timed calls.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time calls for this many seconds instead of --iters.")
@click.option("--engine", "engines", default=None, callback=_engine_list,
              help=f"Engines, comma-separated: {', '.join(ENGINES)}. [default: torch for .pt, onnxruntime for .onnx]")
@providers_option("onnxruntime execution providers, comma-separated, each measured in rows of its own (e.g. "
                  "CPU,OpenVINO; the suffix ExecutionProvider may be left out). [default: CPU]")
@json_option
@click.option("--save", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JSON to this file.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw p50 latency and throughput to this PNG (needs the [report] extra).")
def bench(models: tuple[Path, ...], batch_sizes: list[int], thread_counts: list[int | None],
          stream_counts: list[int], warmup: int, iters: int, duration: float | None, engines: list[str] | None,
          providers: list[str] | None, as_json: bool, save: Path | None, plot: Path | None) -> None:
    """Time end-to-end inference of MODELS: uint8 images in, probabilities out.

    Each model runs on every --engine that takes its file type (torch: .pt;
    onnxruntime, openvino: .onnx), and onnxruntime on every one of --providers.

    Each model × engine × batch size × thread count × stream count runs in a fresh process
    (engines' thread pools would otherwise fight), and reports p50/p90/p99/mean/min
    latency per call, images/s, the model file's size and the process's peak
    resident memory. Ratios compare each row with the first model's row of the
    same batch size, threads and streams (p50 ratio below 1 = faster).

    \b
    resnet-edge bench r18.onnx r18.int8.onnx --batch-size 1,64
    resnet-edge bench r18.int8.onnx --engine onnxruntime,openvino --threads 1,2
    resnet-edge bench r18.int8.onnx --batch-size 64 --threads 1 --streams 2
    resnet-edge bench r18.int8.onnx --engine onnxruntime,openvino --providers CPU,OpenVINO
    resnet-edge bench best.pt r18.onnx r18.int8.onnx --save bench.json --plot bench.png
    """
    jobs = _jobs(models, engines)
    _refuse_unused_options(jobs, stream_counts, providers)
    if plot is not None:
        from resnet_edge.extras import require

        require("matplotlib", "report", "--plot")
    configs = [
        BenchConfig(str(model), engine, batch_size, threads, streams, warmup, iters, duration, provider)
        for model, engine in jobs
        for provider, batch_size, threads, streams in product(
            (providers or list(DEFAULT_PROVIDERS)) if engine == "onnxruntime" else [None],
            batch_sizes, thread_counts, stream_counts)
    ]
    rows = with_ratios(best_of_passes(configs, log=None if as_json else lambda line: click.echo(line, err=True)))
    report = {"results": [row.to_dict() for row in rows]}
    if save is not None:
        atomic_write_bytes(save, (json.dumps(report, indent=2) + "\n").encode())
    if plot is not None:
        from resnet_edge.bench.plot import plot_rows

        plot_rows(rows, plot)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_table(rows))
    for path in (save, plot):
        if path is not None:
            click.echo(f"wrote {path}")


def _jobs(models: Sequence[Path], engines: list[str] | None) -> list[tuple[Path, str]]:
    """(model, engine) for every engine that runs each model's file type; a model that none runs is an error."""
    jobs = []
    for model in models:
        if engines is None:
            jobs.append((model, default_engine(model)))
            continue
        fitting = [engine for engine in engines if runs(engine, model)]
        if not fitting:
            check_engine(engines[0], model)  # raises, saying which file type each engine runs
        jobs.extend((model, engine) for engine in fitting)
    return jobs


def _refuse_unused_options(jobs: list[tuple[Path, str]], stream_counts: list[int], providers: list[str] | None
                           ) -> None:
    """Streams for a torch row, or providers with no onnxruntime row, would silently measure nothing asked for."""
    torch_models = [model.name for model, engine in jobs if engine == "torch"]
    if max(stream_counts) > 1 and torch_models:
        raise click.UsageError(f"--streams {','.join(map(str, stream_counts))}: streams apply to the onnxruntime and "
                               f"openvino engines; {', '.join(torch_models)} would run on torch (bench it separately)")
    if providers is not None and all(engine != "onnxruntime" for _, engine in jobs):
        raise click.UsageError(f"--providers {','.join(map(short_provider_name, providers))}: execution providers "
                               f"apply to the onnxruntime engine, and no model here runs on it")


def _table(rows: Sequence[BenchRow]) -> str:
    cells = []
    for row in rows:
        config, stats = row.config, row.stats
        cells.append((
            Path(config.model).name, config.label, row.result.precision, config.batch_size, config.threads or "all",
            config.streams, f"{stats.p50_ms:.3f}", f"{stats.p90_ms:.3f}", f"{stats.p99_ms:.3f}",
            f"{stats.mean_ms:.3f}", f"{stats.min_ms:.3f}", f"{stats.images_per_second:.1f}",
            f"{row.result.size_bytes / 1e6:.1f}", f"{row.result.peak_rss_mb:.0f}", f"{row.p50_ratio:.2f}×",
        ))
    return format_table(["model", "engine", "precision", "batch", "threads", "streams", "p50 ms", "p90 ms", "p99 ms",
                         "mean ms", "min ms", "images/s", "MB", "peak RSS MB", "p50 vs first"], cells)
