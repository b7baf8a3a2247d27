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
    """Reference model → export → parity → evaluate → predict → bench, with the data built into the package.

    Needs no download. With $RESNET_EDGE_DATA set it also evaluates on the full
    10,000-image test set.
    """
    require("torch", "train", "resnet-edge demo")
    from dataclasses import replace

    from resnet_edge.evaluate import evaluate_model
    from resnet_edge.export import export_onnx
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
        click.echo(f"== 1/5 the reference model shipped in the package: {checkpoint}")
        stage("reference model", f"test top-1 {card['test_top1']:.2%} after {card['epochs']} epochs "
                                 f"({card['wall_seconds'] / 60:.0f} min on {card['hardware']})", t)
    else:
        epochs = epochs or DEMO_CONFIG.epochs
        click.echo("== 1/5 train on the built-in sample (1,000 train / 500 val images)")
        run_dir = out_dir / "train"
        for name in (LAST, BEST, METRICS):  # the demo starts over each time
            (run_dir / name).unlink(missing_ok=True)
        record = run_training(replace(DEMO_CONFIG, epochs=epochs), load_sample("train"), load_sample("val"),
                              run_dir, log=click.echo, progress=progress)
        checkpoint = run_dir / BEST
        stage("train", f"{epochs} epochs on the sample, val top-1 {record['val_acc']:.1%}", t)

    click.echo("== 2/5 export to ONNX and check parity with PyTorch")
    t = time.perf_counter()
    model_path = out_dir / "model.onnx"
    exported = export_onnx(checkpoint, model_path)
    stage("export + parity", f"{model_path}, max |Δlogit| {exported.parity.max_abs_diff:.1e} "
                             f"over {len(exported.parity.cases)} cases", t)

    click.echo("== 3/5 evaluate the ONNX model")
    t = time.perf_counter()
    sample_test = load_sample("test")
    report = evaluate_model(model_path, sample_test)
    stage("evaluate (sample test)", f"top-1 {report['top1']:.1%} on {report['images']} images", t)
    if os.environ.get(DATA_ENV_VAR):
        t = time.perf_counter()
        full = evaluate_model(model_path, load_split("test", default_data_dir()))
        stage("evaluate (full test)", f"top-1 {full['top1']:.1%} on {full['images']} images", t)

    click.echo("== 4/5 predict five test images")
    t = time.perf_counter()
    predictor = Predictor(model_path)
    predictions = predictor.predict(sample_test.images[:5], top_k=1)
    names = predictor.class_names
    rows = [(i, names[label], name, f"{prob[0]:.3f}") for i, (label, name, prob) in
            enumerate(zip(sample_test.labels[:5], predictions.class_names, predictions.top_k_probabilities))]
    click.echo(format_table(["image", "true", "predicted", "probability"], rows))
    hits = sum(row[1] == row[2] for row in rows)
    stage("predict", f"{hits}/5 correct", t)

    click.echo("== 5/5 bench the ONNX model")
    t = time.perf_counter()
    one = measure_latency(predictor, batch_size=1, warmup=20, iters=200)
    many = measure_latency(predictor, batch_size=64, warmup=3, iters=20)
    stage("bench", f"batch 1 p50 {one.p50_ms:.2f} ms; batch 64 {many.images_per_second:.0f} img/s", t)

    click.echo("\nsummary")
    click.echo(format_table(["stage", "result", "seconds"], summary))
    click.echo(f"total {time.perf_counter() - started:.0f} s; outputs in {out_dir}")
