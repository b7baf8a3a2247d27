"""Packages whose names are imported on first use, so importing the package costs nothing it does not need.

``resnet_edge.export`` (whose fp32 export needs torch, while quantization needs only onnx)
and ``resnet_edge.calibration`` (whose reader needs onnx) use it: the light install can
import one part of them without the dependencies of the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a submodule) when ``name`` is read."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__
