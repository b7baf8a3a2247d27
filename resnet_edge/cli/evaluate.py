"""``resnet-edge evaluate``: accuracy of a checkpoint or an ONNX model on CIFAR-10."""

from __future__ import annotations

import json
from pathlib import Path

import click

from resnet_edge.cli.options import (
    PREFERRED_PROVIDERS_HELP,
    data_options,
    json_option,
    load_data,
    providers_option,
    threads_option,
)
from resnet_edge.cli.table import format_table
from resnet_edge.bench.engines import engine_label
from resnet_edge.evaluate import evaluate_model


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_options
@click.option("--split", type=click.Choice(["test", "val"]), default="test", show_default=True,
              help="test: the 10,000 official test images; val: the 2,000-image hold-out used for model selection.")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--tta", is_flag=True,
              help="Average logits over each image and its mirror (a test-time measurement; exported models never flip).")
@threads_option
@providers_option(".onnx models only: " + PREFERRED_PROVIDERS_HELP)
@json_option
def evaluate(model: Path, data_dir: Path | None, download: bool, sample: bool, split: str, batch_size: int,
             tta: bool, threads: int | None, providers: list[str] | None, as_json: bool) -> None:
    """Top-1 and per-class accuracy of MODEL (a .pt checkpoint or an .onnx file)."""
    data = load_data(split, data_dir, download, sample)
    report = evaluate_model(model, data, threads=threads, batch_size=batch_size, tta=tta, providers=providers)
    if as_json:
        click.echo(json.dumps(report))
        return
    flip = " · flip TTA" if tta else ""
    engine = engine_label(report["engine"], report["provider"])
    click.echo(f"{report['model']} · {engine}{flip} · {report['images']} {split} images from {report['data']}")
    click.echo(f"top-1 {report['top1']:.2%}   {report['images_per_second']:.0f} images/s")
    rows = [(name, f"{acc:.2%}" if acc is not None else "-") for name, acc in report["per_class"].items()]
    click.echo(format_table(["class", "top-1"], rows))
