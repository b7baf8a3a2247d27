"""Options shared by several commands, as decorators, and the data loading they drive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from resnet_edge.data import DATA_ENV_VAR, Split, load_sample, load_split, load_train_val
from resnet_edge.runtime.session import resolve_providers

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
