"""The ``resnet-edge bench --plot`` chart: p50 latency and throughput of every row, grouped by setting.

Drawn on a matplotlib ``Figure`` without pyplot (``resnet_edge.figures``, as the training report's charts),
rendered in memory, then written atomically. Needs the ``[report]`` extra (matplotlib).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from resnet_edge.bench.rows import BenchRow
from resnet_edge.figures import new_figure, png_bytes
from resnet_edge.files import atomic_write_bytes

DPI = 110


def _series(row: BenchRow) -> str:
    return f"{Path(row.config.model).name} · {row.config.label}"


def _setting(row: BenchRow) -> tuple[int, int, int]:
    batch, threads, streams = row.config.setting
    return batch, threads or 0, streams  # 0 (all cores) sorts first


def plot_rows(rows: Sequence[BenchRow], path: Path) -> None:
    """Two bar charts side by side, one bar per model · engine in each group of batch size, threads, streams."""
    series = list(dict.fromkeys(_series(r) for r in rows))
    settings = sorted({_setting(r) for r in rows})
    figure = new_figure(12, 4.5, dpi=DPI)
    axes = figure.subplots(1, 2)
    width = 0.8 / max(1, len(series))
    for index, name in enumerate(series):
        by_setting = {_setting(r): r.stats for r in rows if _series(r) == name}
        xs = [i + index * width for i in range(len(settings))]
        axes[0].bar(xs, [by_setting[s].p50_ms if s in by_setting else 0 for s in settings], width, label=name)
        axes[1].bar(xs, [by_setting[s].images_per_second if s in by_setting else 0 for s in settings], width,
                    label=name)
    ticks = [i + 0.4 - width / 2 for i in range(len(settings))]
    names = [f"batch {b}\n{t or 'all'} threads" + (f", {s} streams" if s > 1 else "") for b, t, s in settings]
    for axis, title in zip(axes, ("p50 latency per call (ms, lower is better)", "throughput (images/s)")):
        axis.set_xticks(ticks, names)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    atomic_write_bytes(path, png_bytes(figure))
