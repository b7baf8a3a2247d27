"""The ``resnet-edge`` command line: one module per command, registered on one click group.

Command modules import torch and onnx inside their functions, so ``--help``,
``predict`` and ``bench`` work on the light install (numpy, onnxruntime, click).
"""

from __future__ import annotations

import os
from typing import Any

import click

from resnet_edge import __version__
from resnet_edge.cli.bench import bench
from resnet_edge.cli.demo import demo
from resnet_edge.cli.evaluate import evaluate
from resnet_edge.cli.export import export
from resnet_edge.cli.predict import predict
from resnet_edge.cli.predict_many import predict_many
from resnet_edge.cli.prune import prune
from resnet_edge.cli.quantize import quantize
from resnet_edge.cli.report import report
from resnet_edge.cli.train import train
from resnet_edge.errors import ResnetEdgeError


class ResnetEdgeGroup(click.Group):
    """Turns the toolkit's own errors and OS errors into one-line messages with exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ResnetEdgeError, OSError) as exc:
            raise click.ClickException(_from_this_rank(str(exc))) from None


def _from_this_rank(message: str) -> str:
    """Name the process in errors from torchrun workers other than rank 0, which all print."""
    rank = os.environ.get("RANK", "0")
    return message if rank == "0" else f"[rank {rank}] {message}"


@click.group(cls=ResnetEdgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resnet-edge")
def main() -> None:
    """ResNet-18 on CIFAR-10, from training run to CPU edge device.

    \b
    Typical flow:
      resnet-edge train --out runs/r18 --epochs 30
      resnet-edge prune runs/r18/best.pt --out runs/r18-p30 --ratio 0.3   (optional: faster)
      resnet-edge export runs/r18/best.pt --output r18.onnx
      resnet-edge quantize r18.onnx --output r18.int8.onnx
      resnet-edge evaluate r18.onnx --split test
      resnet-edge predict r18.onnx cat.png
      resnet-edge bench r18.onnx --batch-size 1
    """


for command in (train, prune, report, export, quantize, evaluate, predict, predict_many, bench, demo):
    main.add_command(command)
