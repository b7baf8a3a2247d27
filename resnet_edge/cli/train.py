"""``resnet-edge train``: train ResNet-18 on CIFAR-10 into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from resnet_edge.cli.options import data_options, load_training_data, train_config_of, training_options
from resnet_edge.extras import require
from resnet_edge.train_config import TrainConfig


@click.command()
@data_options
@training_options(TrainConfig())
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across processes under torchrun (CUDA only).")
@click.pass_context
def train(ctx: click.Context, data_dir: Path | None, download: bool, sample: bool, out_dir: Path, device: str,
          resume: bool, progress: bool, sync_bn: bool, **options: Any) -> None:
    """Train ResNet-18 on CIFAR-10 (the validation hold-out picks best.pt; the test split is never used).

    \b
    Several processes (DistributedDataParallel; gloo on CPU, nccl on CUDA):
      torchrun --nproc_per_node 4 -m resnet_edge train --out runs/r18 ...
    --batch-size is the global batch, split evenly over the processes; rank 0
    alone validates and writes the run folder.
    """
    require("torch", "train", "resnet-edge train")
    from resnet_edge.distributed import ranks_from_environment
    from resnet_edge.train import train as run_training

    config, explicit = train_config_of(ctx, options, TrainConfig(), sync_bn=sync_bn)
    train_split, val_split = load_training_data(data_dir, download, sample)
    record = run_training(config, train_split, val_split, out_dir, device=device, resume=resume,
                          explicit_options=explicit, log=click.echo, progress=progress)
    if ranks_from_environment().is_main:
        click.echo(f"done: val top-1 {record['val_acc']:.4f} after epoch {record['epoch']}; "
                   f"checkpoints in {out_dir} (best.pt, last.pt)")
