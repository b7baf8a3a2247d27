"""``resnet-edge prune``: prune a trained ResNet-18's channels, then fine-tune it by distillation into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from resnet_edge.cli.options import data_options, load_training_data, train_config_of, training_options
from resnet_edge.extras import require
from resnet_edge.prune_config import FINE_TUNE_DEFAULTS, IMPORTANCES, PruneConfig

_PRUNE_OPTIONS = ("ratio", "importance", "temperature", "kd_weight")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_options
@training_options(FINE_TUNE_DEFAULTS)
@click.option("--ratio", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Fraction of the channels to remove from each coupled group (0.3 halves the MACs); required "
                   "unless --resume continues a run.")
@click.option("--importance", type=click.Choice(IMPORTANCES), default="l1", show_default=True,
              help="Which channels go: smallest L1 weight norm, or smallest Taylor estimate of the loss they carry.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Softmax temperature of the distillation's soft targets.")
@click.option("--kd-weight", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Weight of the soft-target term; the label loss gets the rest.")
@click.option("--ema", is_flag=True, help="Prune the EMA weights of a timm (state_dict_ema) or similar checkpoint.")
@click.option("--prefix", default=None,
              help="Where the network's weights sit in the state_dict (e.g. 'model.'). [default: found from the "
                   "stem convolution]")
@click.pass_context
def prune(ctx: click.Context, checkpoint: Path, data_dir: Path | None, download: bool, sample: bool, out_dir: Path,
          device: str, resume: bool, progress: bool, ratio: float | None, importance: str, temperature: float,
          kd_weight: float, ema: bool, prefix: str | None, **options: Any) -> None:
    """Prune CHECKPOINT's channels by --ratio and fine-tune the result with the original as its teacher.

    CHECKPOINT is any ResNet-18 file 'resnet-edge export' reads (a resnet-edge checkpoint, kuangliu/pytorch-cifar,
    torchvision, PyTorch Lightning, timm, a bare state_dict). Channels joined by residual additions are pruned
    together (torch-pruning); the smaller model then trains by distillation from CHECKPOINT (soft targets at
    --temperature plus the label loss) through the trainer's pipeline, so --resume, EMA, best.pt/last.pt and
    metrics.jsonl work as in 'resnet-edge train'. best.pt records its widths: export, quantize and the rest
    rebuild it without torch-pruning.

    \b
      resnet-edge prune runs/r18/best.pt --out runs/r18-p30 --ratio 0.3
      resnet-edge export runs/r18-p30/best.pt --output r18-p30.onnx
    """
    require("torch", "train", "resnet-edge prune")
    require("torch_pruning", "prune", "resnet-edge prune")
    from resnet_edge.export.model_file import load_model
    from resnet_edge.prune import Teacher
    from resnet_edge.prune import prune as run_pruning

    loaded = load_model(checkpoint, ema=ema, prefix=prefix)
    teacher = Teacher(loaded.module, checkpoint.name, loaded.sha256, loaded.provenance.get("format", "unknown"),
                      loaded.normalization)
    config, explicit = train_config_of(ctx, options, FINE_TUNE_DEFAULTS)
    prune_config = PruneConfig(ratio=ratio, importance=importance, temperature=temperature, kd_weight=kd_weight)
    explicit_prune = {name for name in _PRUNE_OPTIONS if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    train_split, val_split = load_training_data(data_dir, download, sample)
    record = run_pruning(teacher, out_dir, prune_config, config, train_split, val_split, device=device,
                         resume=resume, explicit_options=explicit, explicit_prune_options=explicit_prune,
                         log=click.echo, progress=progress)
    click.echo(f"done: val top-1 {record['val_acc']:.4f} after epoch {record['epoch']}; "
               f"checkpoints in {out_dir} (best.pt, last.pt)")
