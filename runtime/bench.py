"""Latency of a Predictor on this machine: warm-up, then timed end-to-end ``predict`` calls.

Each timed call includes preprocessing (uint8 NHWC → normalized NCHW), the
onnxruntime run and the softmax, which is what an embedding application pays.
"""

from __future__ import annotations

import time
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


def measure_latency(predictor: Predictor, batch_size: int = 1, warmup: int = 10, iters: int = 100,
                    seed: int = 0) -> LatencyStats:
    """Time ``iters`` calls of ``predictor.predict`` on a random uint8 batch after ``warmup`` calls."""
    if batch_size < 1 or iters < 1 or warmup < 0:
        raise ValueError(
            f"need batch_size >= 1, iters >= 1 and warmup >= 0; got {batch_size}, {iters} and {warmup}"
        )
    size = predictor.metadata.image_size
    images = np.random.default_rng(seed).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    for _ in range(warmup):
        predictor.predict(images)
    timings = np.empty(iters)
    for i in range(iters):
        start = time.perf_counter()
        predictor.predict(images)
        timings[i] = time.perf_counter() - start
    ms = timings * 1e3
    return LatencyStats(
        batch_size=batch_size,
        threads=predictor.threads,
        iters=iters,
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        images_per_second=float(batch_size * iters / timings.sum()),
    )
