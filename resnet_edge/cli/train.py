"""``resnet-edge train``: train ResNet-18 on CIFAR-10 into a run folder."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from resnet_edge.cli.options import data_options, load_training_data
from resnet_edge.extras import require
from resnet_edge.train_config import PRECISIONS, TrainConfig

_CONFIG_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "ema_decay", "cutout",
                   "alternate_flips", "seed", "limit_train", "precision", "sync_bn")


@click.command()
@data_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder for last.pt, best.pt and metrics.jsonl.")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainConfig.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=TrainConfig.batch_size, show_default=True,
              help="Global batch size (split over processes under torchrun).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True,
              help="Peak learning rate of the one-cycle schedule.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=TrainConfig.weight_decay, show_default=True)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=TrainConfig.label_smoothing,
              show_default=True)
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=TrainConfig.ema_decay,
              show_default=True, help="Per-step decay of the weight average that is validated and kept; 0 turns it off.")
@click.option("--cutout", type=click.IntRange(0, 32), default=TrainConfig.cutout, show_default=True,
              help="Side of the square cut out of each training image, in pixels; 0 turns it off.")
@click.option("--alternate-flips/--random-flips", default=TrainConfig.alternate_flips, show_default=True,
              help="Mirror each image in every other epoch, or each with probability 1/2.")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: bf16 autocast on CPUs with native bf16, bf16/fp16 AMP on CUDA, else fp32.")
@click.option("--limit-train", type=click.IntRange(min=1), default=None,
              help="Train on only the first N training images (quick experiments).")
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across processes under torchrun (CUDA only).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from last.pt (or start it if there is none).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on terminals.")
@click.pass_context
def train(ctx: click.Context, data_dir: Path | None, download: bool, sample: bool, out_dir: Path, epochs: int,
          batch_size: int, lr: float, weight_decay: float, label_smoothing: float, ema_decay: float, cutout: int,
          alternate_flips: bool, seed: int, device: str,
          precision: str, limit_train: int | None, sync_bn: bool, resume: bool, progress: bool) -> None:
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

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, label_smoothing=label_smoothing,
        ema_decay=ema_decay, cutout=cutout, alternate_flips=alternate_flips, seed=seed, limit_train=limit_train, precision=precision, sync_bn=sync_bn,
    )
    explicit = {name for name in _CONFIG_OPTIONS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    train_split, val_split = load_training_data(data_dir, download, sample)
    record = run_training(config, train_split, val_split, out_dir, device=device, resume=resume,
                          explicit_options=explicit, log=click.echo, progress=progress)
    if ranks_from_environment().is_main:
        click.echo(f"done: val top-1 {record['val_acc']:.4f} after epoch {record['epoch']}; "
                   f"checkpoints in {out_dir} (best.pt, last.pt)")
