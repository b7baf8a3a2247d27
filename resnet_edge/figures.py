"""Charts as PNG bytes, drawn on matplotlib ``Figure`` objects without pyplot (the report's and the bench's).

pyplot keeps global state and picks a backend; a ``Figure`` renders through Agg whatever
the user's configured backend, so charts work headless, leave a notebook's backend alone
and never switch the backend of a program that imported the toolkit. Needs matplotlib
(the ``[report]`` extra), imported on first use.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A figure of ``width`` × ``height`` inches with constrained layout (labels never overlap the axes)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
