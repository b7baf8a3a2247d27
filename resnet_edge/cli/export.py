"""``resnet-edge export``: a model from anywhere → ONNX with metadata, checked for parity and sanity accuracy."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from resnet_edge.cli.options import json_option
from resnet_edge.cli.table import format_table
from resnet_edge.extras import require
from resnet_edge.metadata import MAX_OPSET, MIN_OPSET, ONNX_SUFFIX


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write. [default: MODEL with the suffix .onnx]")
@click.option("--opset", type=click.IntRange(MIN_OPSET, MAX_OPSET), default=None,
              help="ONNX opset version. [default: 17; an adopted ONNX file keeps its own]")
@click.option("--raw-input", is_flag=True,
              help="Take uint8 (batch, 32, 32, 3) pixels and normalize inside the graph, so apps feed raw pixels.")
@click.option("--mean", metavar="R,G,B",
              help="Normalization mean on the [0, 1] pixel scale. [default: the checkpoint's, else CIFAR-10's]")
@click.option("--std", metavar="R,G,B",
              help="Normalization std on the [0, 1] pixel scale. [default: the checkpoint's, else CIFAR-10's]")
@click.option("--class-names", metavar="NAMES|FILE",
              help="Class names in logit order: comma-separated, or a file with one per line. "
                   "[default: the checkpoint's, else CIFAR-10's]")
@click.option("--model-def", metavar="FILE.py:NAME",
              help="Your own architecture: a class or function in FILE.py that returns the nn.Module "
                   "(called with no arguments); MODEL holds its weights.")
@click.option("--ema", is_flag=True, help="Export the EMA weights of a timm (state_dict_ema) or similar checkpoint.")
@click.option("--prefix", default=None,
              help="Where the network's weights sit in the state_dict (e.g. 'model.'). [default: found from the "
                   "stem convolution]")
@click.option("--allow-pickle", is_flag=True,
              help="Load a whole pickled model (torch.save(model)) with weights_only=False. This runs code from "
                   "the file: only for files you made yourself.")
@click.option("--no-accuracy-check", is_flag=True,
              help="Skip the sanity accuracy check (>= 50 % top-1 on the built-in CIFAR-10 test sample), for models "
                   "that are not CIFAR-10 classifiers.")
@json_option
def export(model: Path, output: Path | None, opset: int | None, raw_input: bool, mean: str | None,
           std: str | None, class_names: str | None, model_def: str | None, ema: bool,
           prefix: str | None, allow_pickle: bool, no_accuracy_check: bool, as_json: bool) -> None:
    """Export MODEL to fp32 ONNX.

    MODEL is a checkpoint from 'resnet-edge train', a CIFAR ResNet-18 saved by other code (kuangliu/pytorch-cifar,
    torchvision, PyTorch Lightning, timm, a bare state_dict), weights for --model-def, or an ONNX file exported
    elsewhere, which is adopted as it is; the kind is read from the file's content.

    The model is written only if the ONNX checker passes, onnxruntime matches the reference (PyTorch, or the
    ONNX file as given) on real and random images at batch 1, 7 and 64 (max |Δlogit| <= 1e-4 × max(1,
    max |logit|), no argmax change) and, unless the checkpoint states its normalization and class names, the
    model scores >= 50 % top-1 on the built-in CIFAR-10 test sample; otherwise nothing is written and the
    command exits 1.
    """
    require("onnx", "train", "resnet-edge export")
    from resnet_edge.export.onnx_adopt import is_onnx_file

    if not is_onnx_file(model):
        require("torch", "train", "resnet-edge export")
    from resnet_edge.export import export_onnx
    from resnet_edge.export.deployment import Deployment, describe_provenance, parse_channels, parse_class_names
    from resnet_edge.export.model_file import UnsafeLoadWarning

    output = output or model.with_suffix(ONNX_SUFFIX)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnsafeLoadWarning)
        result = export_onnx(model, output, opset=opset, raw_input=raw_input,
                             mean=mean and parse_channels("--mean", mean),
                             std=std and parse_channels("--std", std, positive=True),
                             class_names=class_names and parse_class_names(class_names), ema=ema, prefix=prefix, model_def=model_def,
                             allow_pickle=allow_pickle, accuracy_check=False if no_accuracy_check else None)
    for warning in caught:
        if issubclass(warning.category, UnsafeLoadWarning):
            click.echo(f"warning: {warning.message}", err=True)
    metadata = result.metadata
    if as_json:
        click.echo(json.dumps({
            "output": str(result.output),
            "size_bytes": result.size_bytes,
            "opset": result.opset,
            "metadata": metadata.to_props(),
            "parity": result.parity.to_dict(),
            "sanity": result.sanity.to_dict() if result.sanity else None,
        }, indent=2))
        return
    provenance = dict(metadata.provenance or {})
    click.echo(f"read {model}: {describe_provenance(provenance)}")
    click.echo(Deployment.of(metadata).describe())
    rows = [(case.name, f"{case.max_abs_diff:.2e}", f"{case.tolerance:.2e}", case.argmax_mismatches,
             "ok" if case.passed else "FAIL") for case in result.parity.cases]
    reference = "the ONNX file as given" if provenance.get("format") == "onnx" else "PyTorch"
    click.echo(f"parity, {reference} vs onnxruntime:")
    click.echo(format_table(["case", "max |Δlogit|", "tolerance", "argmax changes", ""], rows))
    if result.sanity is not None:
        click.echo(f"sanity check: top-1 {100 * result.sanity.top1:.1f} % on the built-in {result.sanity.images} "
                   "CIFAR-10 test images (>= 50 % required)")
    else:
        why = "--no-accuracy-check" if no_accuracy_check else "the checkpoint states its normalization and classes"
        click.echo(f"sanity check: skipped ({why})")
    click.echo(f"wrote {result.output} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, "
               f"{metadata.describe_interface()})")

