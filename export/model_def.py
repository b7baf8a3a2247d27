"""``--model-def FILE.py:NAME``: the user's own architecture, built from their file and filled with their weights.

For ResNet-18s written from scratch with names no layout table knows (or any
other CIFAR classifier): NAME is a class or a function in FILE.py, called with
no arguments, that returns an ``nn.Module``. Running FILE.py executes the user's
own code, which is what they asked for; the weights still load with
``weights_only=True``. The weights' prefix (``module.``, ``model.``…) is found by
the module's own first tensor name, and then every tensor must match by name and
shape, as ``load_state_dict(strict=True)`` demands.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_edge.errors import ExportError, first_line, key_mismatch

if TYPE_CHECKING:
    from torch import Tensor, nn


def build_model_def(spec: str) -> nn.Module:
    """Import ``FILE.py``, call ``NAME()`` and return the module in eval mode."""
    from torch import nn

    path_text, _, name = spec.rpartition(":")
    if not path_text or not name.isidentifier():
        raise ExportError(f"--model-def {spec!r} is not FILE.py:NAME; expected e.g. models/resnet.py:ResNet18")
    path = Path(path_text)
    if not path.is_file():
        raise ExportError(f"--model-def file not found: {path}")
    module_name = f"_resnet_edge_model_def_{abs(hash(path.resolve()))}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    if spec_ is None or spec_.loader is None:
        raise ExportError(f"--model-def {path} cannot be imported; expected a Python source file")
    source = importlib.util.module_from_spec(spec_)
    sys.modules[module_name] = source  # dataclasses and typing in the user's file look their module up here
    try:
        spec_.loader.exec_module(source)
    except Exception as exc:  # the user's code may raise anything; say where it came from
        del sys.modules[module_name]
        raise ExportError(f"running {path} raised {type(exc).__name__}: {first_line(exc)}") from None
    factory = getattr(source, name, None)
    if factory is None or not callable(factory):
        offered = sorted(n for n, v in vars(source).items()
                         if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                         and getattr(v, "__module__", None) == module_name)
        raise ExportError(f"{path} has no class or function {name!r}; it defines {', '.join(offered) or 'none'}")
    try:
        model = factory()
    except Exception as exc:
        raise ExportError(f"{path}:{name}() raised {type(exc).__name__}: {first_line(exc)}; expected it to build "
                          "the model with no arguments (wrap it in a function that passes them)") from None
    if not isinstance(model, nn.Module):
        raise ExportError(f"{path}:{name}() returned {type(model).__name__}; expected a torch.nn.Module")
    return model.float().eval()


def load_weights(model: nn.Module, state: dict[str, Tensor], source: str, *, prefix: str | None = None,
                 ignore_outside_prefix: bool = False) -> str:
    """Load ``state`` into ``model`` strictly, under ``prefix`` or the one its first tensor name reveals."""
    ours = model.state_dict()
    if not ours:
        raise ExportError(f"the --model-def model has no weights to load from {source}")
    if prefix is None:
        prefix = _find_prefix(ours, state, source)
    theirs = {key[len(prefix):]: tensor for key, tensor in state.items() if key.startswith(prefix)}
    outside = [key for key in state if not key.startswith(prefix)]
    missing, extra = [k for k in ours if k not in theirs], [k for k in theirs if k not in ours]
    if not ignore_outside_prefix:
        extra += outside
    if missing or extra:
        raise ExportError(f"{source} does not fit the --model-def model (prefix {prefix!r}): "
                          f"{key_mismatch(missing, extra)}")
    for key, tensor in theirs.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise ExportError(f"{source}: tensor {prefix}{key} has shape {tuple(tensor.shape)}, "
                              f"expected {tuple(ours[key].shape)} by the --model-def model")
    model.load_state_dict({k: t.float() if t.is_floating_point() else t for k, t in theirs.items()})
    return prefix


def _find_prefix(ours: dict[str, Tensor], state: dict[str, Tensor], source: str) -> str:
    """The prefix under which ``state`` holds every one of ``ours``'s names (the first that does, shortest first)."""
    anchor = next(iter(ours))
    candidates = sorted({key[: -len(anchor)] for key in state
                         if key.endswith(anchor) and (key == anchor or key[-len(anchor) - 1] == ".")}, key=len)
    for candidate in candidates:
        if all(candidate + key in state for key in ours):
            return candidate
    return candidates[0] if candidates else ""

