"""``resnet-edge demo``: the whole pipeline with the shipped reference model and the built-in sample, in under a minute."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from resnet_edge.cli.table import format_table
from resnet_edge.data import DATA_ENV_VAR, default_data_dir, load_sample, load_split
from resnet_edge.extras import require
from resnet_edge.reference import REFERENCE_CARD, REFERENCE_CHECKPOINT, reference_card
from resnet_edge.train_config import TrainConfig

DEMO_CONFIG = TrainConfig(epochs=10, batch_size=100, lr=0.1, warmup_fraction=0.2)


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Folder for the demo's checkpoint (train/) and model.onnx; rewritten each run.")
@click.option("--train-epochs", "epochs", type=click.IntRange(min=1), default=None,
              help=f"Instead of the shipped reference model, train one for this many epochs on the sample "
                   f"(about 7 s each). [default: use the reference model; {DEMO_CONFIG.epochs} if it is missing]")
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(out_dir: Path, epochs: int | None, progress: bool) -> None:
    """Reference model → export → parity → int8 → evaluate → predict → bench, with the data built into the package.

    Needs no download. With $RESNET_EDGE_DATA set it also evaluates on the full
    10,000-image test set.
    """
    require("torch", "train", "resnet-edge demo")
    from dataclasses import replace

    from resnet_edge.calibration import CifarCalibrationReader
    from resnet_edge.evaluate import evaluate_model
    from resnet_edge.export import export_onnx
    from resnet_edge.export.quantize import quantize_onnx
    from resnet_edge.runtime import Predictor, measure_latency
    from resnet_edge.train import BEST, LAST, METRICS
    from resnet_edge.train import train as run_training

    summary: list[tuple[str, str, str]] = []
    started = time.perf_counter()

    def stage(name: str, result: str, since: float) -> None:
        summary.append((name, result, f"{time.perf_counter() - since:.1f}"))

    t = time.perf_counter()
    if epochs is None and REFERENCE_CHECKPOINT.is_file() and REFERENCE_CARD.is_file():
        card = reference_card()
        checkpoint = REFERENCE_CHECKPOINT
        click.echo(f"== 1/6 the reference model shipped in the package: {checkpoint}")
        stage("reference model", f"test top-1 {card['test_top1']:.2%} after {card['epochs']} epochs "
                                 f"({card['wall_seconds'] / 60:.0f} min on {card['hardware']})", t)
    else:
        epochs = epochs or DEMO_CONFIG.epochs
        click.echo("== 1/6 train on the built-in sample (1,000 train / 500 val images)")
        run_dir = out_dir / "train"
        for name in (LAST, BEST, METRICS):  # the demo starts over each time
            (run_dir / name).unlink(missing_ok=True)
        record = run_training(replace(DEMO_CONFIG, epochs=epochs), load_sample("train"), load_sample("val"),
                              run_dir, log=click.echo, progress=progress)
        checkpoint = run_dir / BEST
        stage("train", f"{epochs} epochs on the sample, val top-1 {record['val_acc']:.1%}", t)

    click.echo("== 2/6 export to ONNX and check parity with PyTorch")
    t = time.perf_counter()
    model_path = out_dir / "model.onnx"
    exported = export_onnx(checkpoint, model_path)
    stage("export + parity", f"{model_path}, max |Δlogit| {exported.parity.max_abs_diff:.1e} "
                             f"over {len(exported.parity.cases)} cases", t)

    click.echo("== 3/6 quantize to int8 (calibrated on sample training images, gated on the sample's val split)")
    t = time.perf_counter()
    int8_path = out_dir / "model.int8.onnx"
    reader = CifarCalibrationReader.from_training_split(load_sample("train"), size=512)
    # fallback: a model trained briefly on the sample may need a few fp32 nodes to pass the gate.
    quantized = quantize_onnx(model_path, int8_path, reader, load_sample("val"), fallback=True, log=click.echo)
    stage("quantize int8", f"{int8_path}, {quantized.settings.method}, val drop {quantized.comparison.drop:+.2f} "
                           f"points, agreement {quantized.comparison.agreement:.1%}", t)

    click.echo("== 4/6 evaluate the fp32 and int8 models")
    t = time.perf_counter()
    sample_test = load_sample("test")
    top1 = {name: evaluate_model(path, sample_test)["top1"] for name, path in (("fp32", model_path),
                                                                                ("int8", int8_path))}
    stage("evaluate (sample test)", f"top-1 fp32 {top1['fp32']:.1%}, int8 {top1['int8']:.1%} "
                                    f"on {len(sample_test)} images", t)
    if os.environ.get(DATA_ENV_VAR):
        t = time.perf_counter()
        test = load_split("test", default_data_dir())
        full = {name: evaluate_model(path, test)["top1"] for name, path in (("fp32", model_path), ("int8", int8_path))}
        stage("evaluate (full test)", f"top-1 fp32 {full['fp32']:.2%}, int8 {full['int8']:.2%} "
                                      f"on {len(test)} images", t)

    click.echo("== 5/6 predict five test images")
    t = time.perf_counter()
    predictor = Predictor(model_path)
    predictions = predictor.predict(sample_test.images[:5], top_k=1)
    names = predictor.class_names
    rows = [(i, names[label], name, f"{prob[0]:.3f}") for i, (label, name, prob) in
            enumerate(zip(sample_test.labels[:5], predictions.class_names, predictions.top_k_probabilities))]
    click.echo(format_table(["image", "true", "predicted", "probability"], rows))
    hits = sum(row[1] == row[2] for row in rows)
    stage("predict", f"{hits}/5 correct", t)

    click.echo("== 6/6 bench fp32 against int8")
    t = time.perf_counter()
    rows = []
    for name, path in (("fp32", model_path), ("int8", int8_path)):
        runner = predictor if name == "fp32" else Predictor(path)
        one = measure_latency(runner, batch_size=1, warmup=20, iters=200)
        many = measure_latency(runner, batch_size=64, warmup=3, iters=20)
        rows.append((name, f"{top1[name]:.1%}", f"{path.stat().st_size / 1e6:.1f} MB", f"{one.p50_ms:.2f} ms",
                     f"{many.images_per_second:.0f} img/s"))
    click.echo(format_table(["model", "top-1 (sample test)", "size", "batch-1 p50", "batch-64"], rows))
    stage("bench", f"batch-1 p50 fp32 {rows[0][3]}, int8 {rows[1][3]}", t)

    click.echo("\nsummary")
    click.echo(format_table(["stage", "result", "seconds"], summary))
    click.echo(f"total {time.perf_counter() - started:.0f} s; outputs in {out_dir}")
