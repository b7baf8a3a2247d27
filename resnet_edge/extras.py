"""Import optional dependencies with an install hint instead of a bare ImportError."""

import importlib
from types import ModuleType

from resnet_edge.errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the '{module}' package, which is not installed "
            f"({exc}); install it with: pip install 'resnet-edge[{extra}]'"
        ) from None
