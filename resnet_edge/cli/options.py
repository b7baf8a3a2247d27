"""Options shared by several commands, as decorators, and the data loading they drive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from resnet_edge.data import DATA_ENV_VAR, Split, load_sample, load_split, load_train_val
from resnet_edge.runtime.session import resolve_providers
from resnet_edge.train_config import PRECISIONS, TrainConfig

F = TypeVar("F", bound=Callable[..., Any])
PREFERRED_PROVIDERS_HELP = (
    "onnxruntime execution providers in order of preference, comma-separated (e.g. OpenVINO, with the "
    "onnxruntime-openvino build); nodes a provider cannot run fall back to the next, and to CPU. [default: CPU]"
)


def data_options(func: F) -> F:
    """``--data-dir``, ``--download`` and ``--sample`` for commands that read CIFAR-10."""
    func = click.option(
        "--sample", is_flag=True,
        help="Use the small class-balanced sample built into the package instead of the full data set.",
    )(func)
    func = click.option(
        "--download", is_flag=True,
        help="Download the official CIFAR-10 archive (md5-checked) into --data-dir if it is missing.",
    )(func)
    func = click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        help=f"Folder holding cifar-10-batches-py, or that folder itself. "
             f"[default: ${DATA_ENV_VAR}, else ~/.cache/resnet-edge/cifar10]",
    )(func)
    return func


# The TrainConfig fields that training_options sets; a run's --resume refuses explicit ones that differ.
TRAINING_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "ema_decay", "cutout",
                    "alternate_flips", "seed", "limit_train", "precision")


def training_options(defaults: TrainConfig) -> Callable[[F], F]:
    """The trainer's options (``train``, ``prune``), their defaults taken from ``defaults``.

    The command receives them as keyword arguments; :func:`train_config_of` turns them into a config.
    """
    options = [
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Run folder for last.pt, best.pt and metrics.jsonl."),
        click.option("--epochs", type=click.IntRange(min=1), default=defaults.epochs, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=defaults.batch_size, show_default=True,
                     help="Global batch size (split over processes under torchrun)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=defaults.lr, show_default=True,
                     help="Peak learning rate of the one-cycle schedule."),
        click.option("--weight-decay", type=click.FloatRange(min=0), default=defaults.weight_decay,
                     show_default=True),
        click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True),
                     default=defaults.label_smoothing, show_default=True),
        click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=defaults.ema_decay,
                     show_default=True,
                     help="Per-step decay of the weight average that is validated and kept; 0 turns it off."),
        click.option("--cutout", type=click.IntRange(0, 32), default=defaults.cutout, show_default=True,
                     help="Side of the square cut out of each training image, in pixels; 0 turns it off."),
        click.option("--alternate-flips/--random-flips", default=defaults.alternate_flips, show_default=True,
                     help="Mirror each image in every other epoch, or each with probability 1/2."),
        click.option("--seed", type=int, default=defaults.seed, show_default=True),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(PRECISIONS), default=defaults.precision, show_default=True,
                     help="auto: bf16 autocast on CPUs with native bf16, bf16/fp16 AMP on CUDA, else fp32."),
        click.option("--limit-train", type=click.IntRange(min=1), default=defaults.limit_train,
                     help="Train on only the first N training images (quick experiments)."),
        click.option("--resume", is_flag=True,
                     help="Continue the run in --out from last.pt (or start it if there is none)."),
        click.option("--progress/--no-progress", default=True, show_default=True,
                     help="Show a progress bar on terminals."),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def train_config_of(ctx: click.Context, values: dict[str, Any], defaults: TrainConfig,
                    **fixed: Any) -> tuple[TrainConfig, set[str]]:
    """``defaults`` with :func:`training_options`' ``values`` (and ``fixed`` fields), and the options given explicitly."""
    from dataclasses import replace

    from click.core import ParameterSource

    config = replace(defaults, **{name: values[name] for name in TRAINING_OPTIONS}, **fixed)
    names = (*TRAINING_OPTIONS, *fixed)
    return config, {name for name in names if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout instead of a table.")(func)


def threads_option(func: F) -> F:
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None,
        help="onnxruntime intra-op threads. [default: all cores]",
    )(func)


def providers_option(help: str) -> Callable[[F], F]:
    """``--providers``: onnxruntime execution providers, comma-separated, checked against this onnxruntime build."""
    return click.option("--providers", default=None, callback=_provider_list, help=help)


def _provider_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    """``"CPU,openvino"`` → onnxruntime's names for them, each once; an unavailable one is a usage error."""
    if value is None:
        return None
    try:
        names = resolve_providers([part.strip() for part in value.split(",") if part.strip()])
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return list(dict.fromkeys(names))  # CPU and CPUExecutionProvider are one provider


def load_data(split: str, data_dir: Path | None, download: bool, sample: bool) -> Split:
    """One split from the built-in sample or the full data set."""
    return load_sample(split) if sample else load_split(split, data_dir, download)


def load_training_data(data_dir: Path | None, download: bool, sample: bool) -> tuple[Split, Split]:
    """The train and val splits from the built-in sample or the full data set."""
    if sample:
        return load_sample("train"), load_sample("val")
    return load_train_val(data_dir, download)
