"""A PyTorch model file from anywhere → a model to export, read safely and recognised by its content.

Recognised, by what the file holds (never by its name):

=============================  ==========================================  =======================
file                           how it is recognised                        weights under
=============================  ==========================================  =======================
resnet-edge checkpoint         ``format: resnet-edge-checkpoint``          ``model``
PyTorch Lightning ``.ckpt``    a ``pytorch-lightning_version`` entry       ``state_dict``
timm ``train.py`` checkpoint   ``state_dict`` beside ``arch``/``state_dict_ema``  ``state_dict``, ``--ema``: ``state_dict_ema``
kuangliu/pytorch-cifar         ``net`` (beside ``acc``, ``epoch``)         ``net``
a training loop's own dict     the first of WEIGHT_KEYS holding tensors     that key; ``--ema``: EMA_KEYS
bare ``state_dict``            every value is a tensor                     the file itself
=============================  ==========================================  =======================

The weights then go through ``export.layouts`` into our ``ResNet18`` (or, with
``--model-def``, into the user's own module). Every file loads with
``torch.load(weights_only=True)``, which unpickles tensors and plain containers
only. Two harmless kinds of object are allowed besides: ``argparse.Namespace``
(timm stores its command line as one) and numpy scalars and dtypes (many loops
store ``best_acc`` as one). A whole pickled module (``torch.save(model)``) is
refused, because unpickling it runs code named by the file; ``allow_pickle``
(``--allow-pickle``) loads such a trusted file with ``weights_only=False``,
with a warning, and is the only path that ever does.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_edge.checkpoint import (
    FORMAT,
    check_format,
    class_names_of,
    model_from_checkpoint,
    normalization_of,
    read_torch_file,
)
from resnet_edge.errors import CheckpointError, ExportError, first_line, name_list
from resnet_edge.export.layouts import to_resnet18
from resnet_edge.export.model_def import build_model_def, load_weights
from resnet_edge.files import file_sha256

if TYPE_CHECKING:
    from torch import Tensor, nn

    from resnet_edge.model import ResNet18

WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
LIGHTNING_TAG = "pytorch-lightning_version"


class UnsafeLoadWarning(UserWarning):
    """A model file was unpickled with ``weights_only=False`` (``allow_pickle=True``): it could run code."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to trace, what it was read from, and the deployment facts the file stated (if any)."""

    module: nn.Module  # fp32, eval mode
    num_classes: int
    provenance: dict[str, str]  # format, weights key, layout, prefix: recorded in the ONNX metadata
    sha256: str
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    class_names: tuple[str, ...] | None = None
    val_top1: float | None = None


def load_model(path: str | Path, *, ema: bool = False, prefix: str | None = None, model_def: str | None = None,
               allow_pickle: bool = False) -> LoadedModel:
    """Read ``path`` (any file in the table above, or a pickled module with ``allow_pickle``) into a model."""
    path = Path(path)
    content = read_model_file(path, allow_pickle)
    sha256 = file_sha256(path)
    if _is_module(content) and model_def is None:
        if ema or prefix is not None:
            raise ExportError(f"{path} is a whole pickled module; --ema and --prefix apply to state_dicts")
        module = content.float().eval()
        kind = f"pickled {type(content).__module__}.{type(content).__qualname__}"
        return LoadedModel(module, logit_count(module, path), {"format": kind}, sha256)
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return _own_checkpoint(path, content, ema, prefix, model_def, sha256)
    state, provenance = weights_of(content, path, ema)
    outside_ok = _others_beside_network(provenance, prefix)
    if model_def is not None:
        module = build_model_def(model_def)
        used = load_weights(module, state, str(path), prefix=prefix, ignore_outside_prefix=outside_ok)
        provenance |= {"model_def": Path(model_def.rpartition(":")[0]).name + ":" + model_def.rpartition(":")[2],
                       "prefix": used}
        return LoadedModel(module, logit_count(module, path), provenance, sha256)
    mapped = to_resnet18(state, str(path), prefix=prefix, ignore_outside_prefix=outside_ok)
    provenance |= {"layout": mapped.layout.name, "prefix": mapped.prefix}
    if mapped.ignored:
        provenance["left_out"] = name_list(list(mapped.ignored))
    return LoadedModel(mapped.model, mapped.model.fc.out_features, provenance, sha256)


def load_foreign_checkpoint(path: str | Path, *, ema: bool = False, prefix: str | None = None,
                            allow_pickle: bool = False) -> ResNet18:
    """Our ``ResNet18`` (fp32, eval) holding the weights of any ResNet-18 file :func:`load_model` reads.

    A pickled module (``allow_pickle``) contributes its ``state_dict``, renamed by the same layout tables.
    """
    content = read_model_file(Path(path), allow_pickle)
    if _is_module(content):
        content = content.state_dict()
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return model_from_checkpoint(check_format(content, Path(path)))
    state, provenance = weights_of(content, Path(path), ema)
    return to_resnet18(state, str(path), prefix=prefix,
                       ignore_outside_prefix=_others_beside_network(provenance, prefix)).model


def read_model_file(path: Path, allow_pickle: bool = False) -> Any:
    """``torch.load`` onto the CPU: ``weights_only`` (plus the harmless globals above) unless ``allow_pickle``."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if allow_pickle:
        warnings.warn(f"unpickling {path} with weights_only=False (--allow-pickle): this runs any code the file "
                      "names; do it only for files you made yourself", UnsafeLoadWarning, stacklevel=2)
        return _load(path, weights_only=False)
    with torch.serialization.safe_globals(_harmless_globals()):
        try:
            return _load(path, weights_only=True)
        except CheckpointError as error:
            unsafe = _unsafe_globals(path)
            if not unsafe:
                raise error from None
    modules = [name for name in unsafe if name.startswith("torch.nn.modules.")]
    what = "a whole pickled model (torch.save(model))" if modules else "pickled Python objects"
    raise CheckpointError(
        f"{path} holds {what} ({name_list([n for n in unsafe if n not in modules] or unsafe, 2)}), not just tensors: "
        "loading it would run code from the file. Save the weights instead, torch.save(model.state_dict(), "
        "'weights.pt'), or pass --allow-pickle if you made this file yourself"
    )


def weights_of(content: Any, path: Path, ema: bool) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state_dict inside ``content`` and how it was found (the table in the module docstring)."""
    if not isinstance(content, dict):
        raise CheckpointError(f"{path} holds a {type(content).__name__}; expected a state_dict or a dict holding one")
    if _is_state_dict(content):
        if ema:
            raise ExportError(f"--ema: {path} is a bare state_dict, with no separate EMA weights")
        return content, {"format": "state_dict"}
    if LIGHTNING_TAG in content:
        kind = "lightning"
    elif "state_dict" in content and ("arch" in content or "state_dict_ema" in content):
        kind = "timm"
    elif "net" in content and ("acc" in content or "epoch" in content):
        kind = "kuangliu"
    else:
        kind = "checkpoint dict"
    keys = EMA_KEYS if ema else WEIGHT_KEYS
    key = next((k for k in keys if _is_state_dict(content.get(k)) and content.get(k)), None)
    if key is None:
        found = ", ".join(repr(k) for k in list(content)[:8])
        wanted = "EMA weights under " + " or ".join(map(repr, EMA_KEYS)) if ema else \
            "a state_dict (name → tensor) or a dict holding one under " + " or ".join(map(repr, WEIGHT_KEYS))
        raise CheckpointError(f"{path} has keys {found}; expected {wanted}")
    provenance = {"format": kind, "weights": key}
    unused_ema = next((k for k in EMA_KEYS if not ema and _is_state_dict(content.get(k)) and content.get(k)), None)
    if unused_ema is not None:
        provenance["ema_weights"] = unused_ema  # a hint for the user, should the raw weights score badly
    return content[key], provenance


def _others_beside_network(provenance: dict[str, str], prefix: str | None) -> bool:
    """Whether tensors outside the network's prefix are left out rather than refused.

    A LightningModule's state_dict also holds its other attributes (a weighted loss, metrics), and a
    user who names ``--prefix`` has chosen; anywhere else an unknown tensor means the wrong file.
    """
    return provenance["format"] == "lightning" or prefix is not None


def _own_checkpoint(path: Path, payload: dict, ema: bool, prefix: str | None, model_def: str | None,
                    sha256: str) -> LoadedModel:
    if ema or prefix is not None or model_def is not None:
        raise ExportError(f"{path} is a resnet-edge checkpoint: its 'model' already holds the weights to deploy "
                          "(the EMA average when training kept one); --ema, --prefix and --model-def do not apply")
    payload = check_format(payload, path)
    model = model_from_checkpoint(payload)
    return LoadedModel(model, model.fc.out_features, {"format": "resnet-edge", **pruning_provenance(payload)},
                       sha256, normalization_of(payload), class_names_of(payload), payload.get("val_top1"))


def pruning_provenance(payload: dict) -> dict[str, str]:
    """What the ONNX metadata says of a pruned checkpoint: its widths and what it was pruned from, and how."""
    pruning = payload.get("pruning")
    if not pruning:
        return {}
    return {
        "pruned_from": pruning["source"],
        "pruned_from_sha256": pruning["source_sha256"],
        "pruning": json.dumps({key: pruning[key] for key in ("ratio", "importance", "temperature", "kd_weight",
                                                             "source_parameters", "parameters", "source_macs",
                                                             "macs", "library") if key in pruning}),
        "widths": json.dumps(payload.get("widths")),
    }


def _load(path: Path, weights_only: bool) -> Any:
    return read_torch_file(path, weights_only=weights_only,
                           expected="a PyTorch checkpoint or state_dict, or an ONNX model")


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a zip-format file would unpickle beyond the allowed ones (read, never run)."""
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip-format file, or not a checkpoint at all
        return []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _harmless_globals()}
    return [name for name in found if name not in allowed]


def _harmless_globals() -> list[Any]:
    """Objects allowed besides tensors: building them runs no code from the file."""
    import numpy as np

    scalar = getattr(getattr(np, "_core", np.core), "multiarray").scalar
    return [argparse.Namespace, scalar, np.dtype,
            *(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType"))]


def _is_state_dict(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def _is_module(value: Any) -> bool:
    from torch import nn

    return isinstance(value, nn.Module)


def logit_count(module: nn.Module, path: Path | str) -> int:
    """The logit count of ``module``, found by running it on two zero images."""
    import torch

    from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE

    try:
        with torch.inference_mode():
            out = module(torch.zeros(2, CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    except Exception as exc:
        raise ExportError(f"the model from {path} fails on a (2, 3, 32, 32) batch: {type(exc).__name__}: "
                          f"{first_line(exc)}") from None
    if not hasattr(out, "ndim") or out.ndim != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
        raise ExportError(f"the model from {path} maps (2, 3, 32, 32) to {shape}; expected (2, K) logits")
    return int(out.shape[1])
