"""Packages whose names are imported on first use, so importing the package costs nothing it does not need.

``resnet_edge.export`` (whose fp32 export needs torch, while quantization needs only onnx)
and ``resnet_edge.calibration`` (whose reader needs onnx) use it: the light install can
import one part of them without the dependencies of the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and a module ``__getattr__`` for ``package``: each name is imported from its submodule when read.

    ``modules`` maps a submodule of ``package`` to the names it provides.
    """
    owner = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)

    return sorted(owner), __getattr__
