"""``resnet-edge export``: checkpoint → ONNX with metadata, checked for parity with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import click

from resnet_edge.cli.options import json_option
from resnet_edge.cli.table import format_table
from resnet_edge.extras import require
from resnet_edge.metadata import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ONNX_SUFFIX


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write. [default: CHECKPOINT with the suffix .onnx]")
@click.option("--opset", type=click.IntRange(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET, show_default=True,
              help="ONNX opset version.")
@click.option("--raw-input", is_flag=True,
              help="Take uint8 (batch, 32, 32, 3) pixels and normalize inside the graph, so apps feed raw pixels.")
@json_option
def export(checkpoint: Path, output: Path | None, opset: int, raw_input: bool, as_json: bool) -> None:
    """Export CHECKPOINT (a .pt from 'resnet-edge train') to fp32 ONNX.

    The model is written only if the ONNX checker passes and onnxruntime matches
    PyTorch on real and random images at batch 1, 7 and 64 (max |Δlogit| <=
    1e-4 × max(1, max |logit|), no argmax change); otherwise nothing is written
    and the command exits 1.
    """
    require("torch", "train", "resnet-edge export")
    require("onnx", "train", "resnet-edge export")
    from resnet_edge.export import export_onnx

    output = output or checkpoint.with_suffix(ONNX_SUFFIX)
    result = export_onnx(checkpoint, output, opset=opset, raw_input=raw_input)
    if as_json:
        click.echo(json.dumps({
            "output": str(result.output),
            "size_bytes": result.size_bytes,
            "opset": result.opset,
            "metadata": result.metadata.to_props(),
            "parity": result.parity.to_dict(),
        }, indent=2))
        return
    click.echo(f"wrote {result.output} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, "
               f"{result.metadata.describe_interface()})")
    rows = [(case.name, f"{case.max_abs_diff:.2e}", f"{case.tolerance:.2e}", case.argmax_mismatches,
             "ok" if case.passed else "FAIL") for case in result.parity.cases]
    click.echo("parity, PyTorch vs onnxruntime:")
    click.echo(format_table(["case", "max |Δlogit|", "tolerance", "argmax changes", ""], rows))
