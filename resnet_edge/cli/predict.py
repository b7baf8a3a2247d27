"""``resnet-edge predict``: classify image files and .npy arrays with an ONNX model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from resnet_edge.cli.options import PREFERRED_PROVIDERS_HELP, json_option, providers_option, threads_option
from resnet_edge.cli.table import format_table
from resnet_edge.runtime.images import read_image_file
from resnet_edge.runtime.inputs import is_single
from resnet_edge.runtime.predictor import Predictor


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
# FILES are checked by read_image_file, whose one-line errors name the file (click's would print a usage block).
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes to list per image.")
@click.option("--resize", is_flag=True, help="Resize images that are not 32x32 (bilinear) instead of refusing them.")
@threads_option
@providers_option(PREFERRED_PROVIDERS_HELP)
@json_option
def predict(model: Path, files: tuple[Path, ...], top_k: int, resize: bool, threads: int | None,
            providers: list[str] | None, as_json: bool) -> None:
    """Classify FILES with MODEL (an .onnx file from 'resnet-edge export').

    FILES are PNG/JPEG images (32×32 RGB; other sizes with --resize) or .npy arrays:
    a uint8 (32, 32, 3) image, a uint8 (N, 32, 32, 3) batch or a normalized float32
    (N, 3, 32, 32) batch.
    """
    predictor = Predictor(model, threads=threads, providers=providers)
    top_k = min(top_k, len(predictor.class_names))
    results = []
    for path in files:
        # Pillow warns about files it still reads (corrupt EXIF data, for one): each warning becomes one line
        # naming the file, and none is printed when the file fails, since its one-line error says why.
        with warnings.catch_warnings(record=True) as caught:
            try:
                images = read_image_file(path)
                predictions = predictor.predict(images, top_k=top_k, resize=resize)
            except ValueError as exc:
                message = str(exc).replace("pass resize=True", "pass --resize")
                raise click.ClickException(message if message.startswith(str(path)) else f"{path}: {message}") \
                    from None
        for message in _first_lines(caught):
            click.echo(f"Warning: {path}: {message}", err=True)
        single = is_single(images)
        for index, record in enumerate(predictions.to_records()):
            results.append({"file": str(path), "index": None if single else index, **record})
    if as_json:
        click.echo(json.dumps({"model": str(model), "predictions": results}))
        return
    rows = []
    for result in results:
        name = result["file"] if result["index"] is None else f"{result['file']}[{result['index']}]"
        others = ", ".join(f"{c['class_name']} {c['probability']:.3f}" for c in result["top_k"])
        rows.append((name, result["class_name"], f"{result['probability']:.3f}", others))
    click.echo(format_table(["file", "class", "probability", f"top-{top_k}"], rows))


def _first_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """Each distinct warning once, by the first line of its message."""
    lines = (str(w.message).strip().splitlines() for w in caught)
    return list(dict.fromkeys(line[0] for line in lines if line))
