"""``resnet-edge quantize``: fp32 ONNX → int8 ONNX behind an accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from resnet_edge.calibration.selection import DEFAULT_CALIBRATION_IMAGES
from resnet_edge.cli.options import data_options, json_option, load_data, load_training_data
from resnet_edge.cli.table import format_table
from resnet_edge.data import BATCHES_FOLDER, DATA_ENV_VAR, SAMPLE_SOURCE, batches_root, default_data_dir
from resnet_edge.errors import DataError
from resnet_edge.export.qdq import DEFAULT_METHOD, METHODS
from resnet_edge.export.quantize import DEFAULT_MAX_DROP
from resnet_edge.extras import require
from resnet_edge.metadata import ONNX_SUFFIX

if TYPE_CHECKING:
    from resnet_edge.calibration import CalibrationReader


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="int8 ONNX file to write. [default: MODEL with the suffix .int8.onnx]")
@data_options
@click.option("--calibration", "calibration_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="Calibrate on your own images instead: a folder of 32x32 image files or a uint8 (N, 32, 32, 3) "
                   ".npy array.")
@click.option("--method", type=click.Choice(METHODS), default=DEFAULT_METHOD, show_default=True,
              help="How activation ranges are taken from the calibration images.")
@click.option("--calib-size", type=click.IntRange(min=1), default=DEFAULT_CALIBRATION_IMAGES, show_default=True,
              help="Class-balanced calibration images drawn from the training split.")
@click.option("--calib-batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration image draw.")
@click.option("--max-drop", type=click.FloatRange(min=0), default=DEFAULT_MAX_DROP, show_default=True,
              help="Most top-1 points int8 may lose against fp32 on --eval-split; beyond it nothing is written.")
@click.option("--fallback", is_flag=True,
              help="When int8 loses too much, keep the most sensitive nodes in fp32, one at a time, until it does not.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="Weight scales per output channel or one per tensor.")
@click.option("--reduce-range/--full-range", default=None,
              help="7-bit or full 8-bit weights. [default: 7-bit only on x86 CPUs without VNNI]")
@click.option("--eval-split", type=click.Choice(["val", "test"]), default="val", show_default=True,
              help="Split the gate measures on; use test only for the final report.")
@json_option
def quantize(model: Path, output: Path | None, data_dir: Path | None, download: bool, sample: bool,
             calibration_path: Path | None, method: str, calib_size: int, calib_batch_size: int, seed: int,
             max_drop: float, fallback: bool, per_channel: bool, reduce_range: bool | None, eval_split: str,
             as_json: bool) -> None:
    """Quantize MODEL (an fp32 .onnx from 'resnet-edge export') to static int8 QDQ.

    Calibrates on training images (never test or val), then measures fp32 and
    int8 on --eval-split: the int8 model is written only if it loses at most
    --max-drop top-1 points. Without the full data set the built-in sample is
    used, and the output and the model's metadata say so.
    """
    require("onnx", "quantize", "resnet-edge quantize")
    from resnet_edge.calibration import CifarCalibrationReader
    from resnet_edge.export.quantize import quantize_onnx
    from resnet_edge.runtime import Predictor, measure_latency

    output = output or model.with_name(model.name.removesuffix(ONNX_SUFFIX) + ".int8" + ONNX_SUFFIX)
    log = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    sample = sample or _use_sample(data_dir, download, log)
    predictor = Predictor(model)  # also refuses a model without resnet-edge metadata, before any data is read
    mean, std, raw_pixels = predictor.metadata.mean, predictor.metadata.std, predictor.metadata.raw_input
    train, val = load_training_data(data_dir, download, sample)  # one read of the training files
    split = val if eval_split == "val" else load_data("test", data_dir, download, sample)
    if calibration_path is None:
        try:
            reader = CifarCalibrationReader.from_training_split(train, calib_size, calib_batch_size, seed,
                                                                mean=mean, std=std, raw_pixels=raw_pixels)
        except ValueError as exc:  # more images per class than the split holds
            raise DataError(f"--calib-size {calib_size}: {exc}") from None
    else:
        reader = _user_reader(calibration_path, calib_batch_size, mean, std, raw_pixels)
    result = quantize_onnx(model, output, reader, split, method=method, per_channel=per_channel,
                           reduce_range=reduce_range, max_drop=max_drop, fallback=fallback, log=log)
    latency = {
        "fp32": measure_latency(predictor, batch_size=1, warmup=20, iters=200).p50_ms,
        "int8": measure_latency(Predictor(output), batch_size=1, warmup=20, iters=200).p50_ms,
    }
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "batch1_p50_ms": latency}, indent=2))
        return
    accuracy = result.comparison
    click.echo(f"wrote {output}")
    rows = [
        (f"{split.name} top-1 ({len(split)} images)", f"{100 * accuracy.fp32_top1:.2f} %",
         f"{100 * accuracy.int8_top1:.2f} %", f"{0.0 - accuracy.drop:+.2f} points"),
        ("size", f"{result.fp32_bytes / 1e6:.1f} MB", f"{result.int8_bytes / 1e6:.1f} MB",
         f"{result.int8_bytes / result.fp32_bytes:.2f}×"),
        ("batch-1 latency p50", f"{latency['fp32']:.2f} ms", f"{latency['int8']:.2f} ms",
         f"{latency['int8'] / latency['fp32']:.2f}×"),
    ]
    click.echo(format_table(["", "fp32", "int8", "int8 vs fp32"], rows))
    click.echo(f"top-1 agreement {100 * accuracy.agreement:.2f} %; per-class change (points): "
               + ", ".join(f"{name} {delta:+.1f}" for name, delta in accuracy.per_class_delta.items()))
    if result.fallback:
        cost = result.fallback_cost or {}
        click.echo(f"kept in fp32 ({len(result.fallback)}): {', '.join(step.node for step in result.fallback)}; "
                   f"cost vs all-int8: {cost.get('batch1_p50_ms', 0):.2f} vs {cost.get('all_int8_batch1_p50_ms', 0):.2f} "
                   f"ms at batch 1, {cost.get('bytes', 0) / 1e6:.1f} vs {cost.get('all_int8_bytes', 0) / 1e6:.1f} MB")


def _use_sample(data_dir: Path | None, download: bool, log) -> bool:
    """Fall back to the built-in sample when no data set was asked for and none is at the default place."""
    if data_dir is not None or download:
        return False
    default = default_data_dir()
    if (batches_root(default) / BATCHES_FOLDER).is_dir():
        return False
    log(f"no CIFAR-10 at {default} (set --data-dir or ${DATA_ENV_VAR}): calibrating and measuring on the "
        f"{SAMPLE_SOURCE}")
    return True


def _user_reader(path: Path, batch_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 raw_pixels: bool) -> CalibrationReader:
    from resnet_edge.calibration import CifarCalibrationReader

    read = CifarCalibrationReader.from_folder if path.is_dir() else CifarCalibrationReader.from_array
    try:
        return read(path, batch_size, mean=mean, std=std, raw_pixels=raw_pixels)
    except ValueError as exc:
        raise DataError(f"--calibration {exc}") from None
