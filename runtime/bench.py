"""Latency of a Predictor on this machine: warm-up, then timed end-to-end ``predict`` calls.

Each timed call includes preprocessing (uint8 NHWC → normalized NCHW), the
onnxruntime run and the softmax, which is what an embedding application pays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

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

    def to_dict(self) -> dict:
        return asdict(self)


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
    seconds = np.asarray(timings)
    ms = seconds * 1e3
    return LatencyStats(
        batch_size=batch_size,
        threads=threads,
        iters=len(ms),
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        images_per_second=float(batch_size * len(ms) / seconds.sum()),
    )


def measure_latency(predictor: Predictor, batch_size: int = 1, warmup: int = 10, iters: int = 100,
                    seed: int = 0, duration: float | None = None) -> LatencyStats:
    """Time ``iters`` calls (or ``duration`` seconds) of ``predictor.predict`` on a random uint8 batch."""
    size = predictor.metadata.image_size
    images = np.random.default_rng(seed).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    return time_calls(lambda: predictor.predict(images), batch_size, warmup, iters, duration, predictor.threads)


def interleaved_timings(calls: list[Callable[[], object]], iters: int, warmup: int = 50,
                        round_size: int = 20) -> np.ndarray:
    """Seconds per call, ``(len(calls), iters)``, timed in rounds of ``round_size`` whose order alternates.

    Comparing two models (or two code paths) this way lets drift in clock speed
    or background load hit both equally: on a shared machine, timing one after
    the other can shift a ratio by tens of percent.
    """
    for call in calls:
        for _ in range(warmup):
            call()
    timings = np.empty((len(calls), iters))
    done = 0
    for round_index in range(-(-iters // round_size)):
        count = min(round_size, iters - done)
        order = range(len(calls)) if round_index % 2 == 0 else reversed(range(len(calls)))
        for which in order:
            call = calls[which]
            for i in range(done, done + count):
                start = time.perf_counter()
                call()
                timings[which, i] = time.perf_counter() - start
        done += count
    return timings
