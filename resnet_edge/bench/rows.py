"""A bench row, typed: what to measure, what was measured, and how it compares with its baseline.

Rows cross a process boundary (the parent sends a ``BenchConfig`` to a fresh worker, which answers with a
``BenchResult``) and leave the toolkit as JSON (``resnet-edge bench --json`` / ``--save``, the benchmark
scripts' ``--json``), so each type has ``to_dict`` / ``from_dict`` and those are the only places that know the
keys. A ``BenchRow``'s dictionary is flat, as ``--json`` has always printed it: the config's keys, then the
result's, then the ratios. Its ``iters`` is the number of calls timed, which with a ``duration`` is what the
duration allowed rather than the config's ``iters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from resnet_edge.bench.engines import engine_label
from resnet_edge.runtime.bench import LatencyStats


@dataclass(frozen=True)
class BenchConfig:
    """One row to measure: a model file on one engine (and onnxruntime execution provider) at one setting.

    ``threads`` None leaves each engine its own default (all cores); with ``streams`` > 1 it counts per
    stream. ``duration`` (seconds), when given, replaces ``iters``. ``predictor_options`` go to the
    onnxruntime ``Predictor`` (``optimization``, ``session_config``, ...).
    """

    model: str
    engine: str
    batch_size: int = 1
    threads: int | None = None
    streams: int = 1
    warmup: int = 10
    iters: int = 100
    duration: float | None = None
    provider: str | None = None
    predictor_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The engine as tables print it: ``onnxruntime``, or ``onnxruntime (OpenVINO EP)`` off the CPU provider."""
        return engine_label(self.engine, self.provider)

    @property
    def setting(self) -> tuple[int, int | None, int]:
        """(batch size, threads, streams): what a row must share with its baseline for a ratio to mean anything."""
        return self.batch_size, self.threads, self.streams

    def describe(self) -> str:
        """``model.onnx · onnxruntime · batch 1 · threads all · streams 1``, for progress lines."""
        return (f"{Path(self.model).name} · {self.label} · batch {self.batch_size} · threads "
                f"{self.threads or 'all'} · streams {self.streams}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``provider`` and ``predictor_options`` only when set, as ``--json`` has always shown them."""
        values = asdict(self)
        if values["provider"] is None:
            del values["provider"]
        if not values["predictor_options"]:
            del values["predictor_options"]
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BenchConfig:
        """The config from ``to_dict``'s keys (or a whole row's: the other keys are ignored)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass(frozen=True)
class BenchResult:
    """What one worker measured: the latency statistics, the model's precision, its file size, the peak memory."""

    stats: LatencyStats
    precision: str
    peak_rss_mb: float
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"size_bytes": self.size_bytes, **self.stats.to_dict(), "precision": self.precision,
                "peak_rss_mb": self.peak_rss_mb}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BenchResult:
        return cls(LatencyStats.from_dict(values), values["precision"], values["peak_rss_mb"], values["size_bytes"])


@dataclass(frozen=True)
class BenchRow:
    """A measured row; the ratios are against its baseline row (see ``with_ratios``), None until compared."""

    config: BenchConfig
    result: BenchResult
    p50_ratio: float | None = None
    throughput_ratio: float | None = None

    @property
    def stats(self) -> LatencyStats:
        return self.result.stats

    def to_dict(self) -> dict[str, Any]:
        """The flat row of ``--json``: config keys, then the result's (its ``iters`` the calls timed), then ratios."""
        values = {**self.config.to_dict(), **self.result.to_dict()}
        if self.p50_ratio is not None:
            values |= {"p50_ratio": self.p50_ratio, "throughput_ratio": self.throughput_ratio}
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BenchRow:
        return cls(BenchConfig.from_dict(values), BenchResult.from_dict(values), values.get("p50_ratio"),
                   values.get("throughput_ratio"))


def with_ratios(rows: Sequence[BenchRow]) -> list[BenchRow]:
    """Each row with its p50 and throughput relative to the first model's row of the same setting.

    The first model is the first row's model on the first row's engine and provider; below 1 is faster for
    ``p50_ratio``, above 1 for ``throughput_ratio``.
    """
    if not rows:
        return []
    first = rows[0].config.model, rows[0].config.label
    baseline = {r.config.setting: r for r in rows if (r.config.model, r.config.label) == first}
    compared = []
    for row in rows:
        base = baseline[row.config.setting]
        compared.append(replace(row, p50_ratio=row.stats.p50_ms / base.stats.p50_ms,
                                throughput_ratio=row.stats.images_per_second / base.stats.images_per_second))
    return compared
