"""Latency of a Predictor on this machine: warm-up, then timed end-to-end ``predict`` calls.

Each timed call includes preprocessing (uint8 NHWC → normalized NCHW), the
onnxruntime run and the softmax, which is what an embedding application pays.
``time_calls`` and ``LatencyStats`` are the one timing loop and the one set of
statistics of the toolkit: ``resnet-edge bench`` (``resnet_edge.bench``) times
every engine with them too. They live here, not there, because the runtime's
public ``measure_latency`` needs them and the runtime imports nothing but
numpy and onnxruntime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from resnet_edge.runtime.predictor import Predictor


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds and throughput in images per second."""

    batch_size: int
    threads: int | None
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    images_per_second: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float] | np.ndarray, batch_size: int,
                     threads: int | None = None) -> LatencyStats:
        """The statistics of per-call wall times in seconds, each call one batch of ``batch_size`` images.

        Throughput is images over the total time, not over the median, so slow calls count against it.
        """
        times = np.asarray(seconds, dtype=np.float64)
        if times.ndim != 1 or len(times) == 0:
            raise ValueError(f"need a non-empty 1-D sequence of call times, got shape {times.shape}")
        ms = times * 1e3
        return cls(
            batch_size=batch_size,
            threads=threads,
            iters=len(ms),
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            images_per_second=float(batch_size * len(ms) / times.sum()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LatencyStats:
        """The statistics from ``to_dict``'s keys; other keys (a bench row's) are ignored."""
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})


def time_calls(call: Callable[[], object], batch_size: int, warmup: int = 10, iters: int = 100,
               duration: float | None = None, threads: int | None = None) -> LatencyStats:
    """Time ``call`` (one batch of ``batch_size`` images) ``iters`` times, or for ``duration`` seconds, after warm-up."""
    if batch_size < 1 or iters < 1 or warmup < 0 or (duration is not None and duration <= 0):
        raise ValueError(
            f"need batch_size >= 1, iters >= 1, warmup >= 0 and duration > 0; "
            f"got {batch_size}, {iters}, {warmup} and {duration}"
        )
    for _ in range(warmup):
        call()
    timings: list[float] = []
    deadline = None if duration is None else time.perf_counter() + duration
    while (len(timings) < iters) if deadline is None else (time.perf_counter() < deadline or not timings):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return LatencyStats.from_seconds(timings, batch_size, threads)


def measure_latency(predictor: Predictor, batch_size: int = 1, warmup: int = 10, iters: int = 100,
                    seed: int = 0, duration: float | None = None) -> LatencyStats:
    """Time ``iters`` calls (or ``duration`` seconds) of ``predictor.predict`` on a random uint8 batch."""
    size = predictor.metadata.image_size
    images = np.random.default_rng(seed).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    return time_calls(lambda: predictor.predict(images), batch_size, warmup, iters, duration, predictor.threads)

