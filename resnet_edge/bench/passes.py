"""Alternating order, so that drift in clock speed or background load hits every row alike.

On a shared machine, timing one row after another can shift a ratio by tens of percent: a burst of load
lands on whichever row runs at the time. Both helpers here run their work in an order that reverses from one
round to the next, so a slow spell falls on the rows at one end in one round and on the other end in the next:

- ``best_of_passes``: bench rows (each in its own process) over several passes, keeping each row's fastest
  pass, so a slow spell never decides a ratio; for the ``benchmarks/`` scripts and ``resnet-edge bench``.
- ``interleaved_timings``: calls within one process in alternating rounds, for comparisons that must share a
  process (a bare session against the ``Predictor`` around it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from resnet_edge.bench.rows import BenchConfig, BenchRow
from resnet_edge.bench.worker import run_in_subprocess


def pass_order(count: int, passes: int) -> list[list[int]]:
    """The row indices of each pass: first to last, then last to first, and so on."""
    forward = list(range(count))
    return [forward if p % 2 == 0 else forward[::-1] for p in range(passes)]


def best_of_passes(configs: Sequence[BenchConfig], passes: int = 1, *, names: Sequence[str] | None = None,
                   log: Callable[[str], None] | None = None,
                   measure: Callable[[BenchConfig], BenchRow] = run_in_subprocess) -> list[BenchRow]:
    """Each config's row with the lowest p50 over ``passes`` passes in alternating order, in ``configs``' order.

    ``measure`` runs one row (by default in a fresh process); ``log`` gets a progress line before each, naming
    the row by ``names`` (default: ``BenchConfig.describe``). On a tie the earlier pass's row is kept.
    """
    if passes < 1:
        raise ValueError(f"need at least 1 pass, got {passes}")
    labels = [config.describe() for config in configs] if names is None else list(names)
    if len(labels) != len(configs):
        raise ValueError(f"{len(labels)} names for {len(configs)} rows")
    best: list[BenchRow | None] = [None] * len(configs)
    for number, order in enumerate(pass_order(len(configs), passes), start=1):
        for index in order:
            if log is not None:
                log(f"  {labels[index]}" + (f" (pass {number}/{passes})" if passes > 1 else "") + " ...")
            row = measure(configs[index])
            kept = best[index]
            if kept is None or row.stats.p50_ms < kept.stats.p50_ms:
                best[index] = row
    return [row for row in best if row is not None]


def interleaved_timings(calls: list[Callable[[], object]], iters: int, warmup: int = 50,
                        round_size: int = 20) -> np.ndarray:
    """Seconds per call, ``(len(calls), iters)``, timed in rounds of ``round_size`` whose order alternates."""
    for call in calls:
        for _ in range(warmup):
            call()
    timings = np.empty((len(calls), iters))
    done = 0
    for order in pass_order(len(calls), -(-iters // round_size)):
        count = min(round_size, iters - done)
        for which in order:
            call = calls[which]
            for i in range(done, done + count):
                start = time.perf_counter()
                call()
                timings[which, i] = time.perf_counter() - start
        done += count
    return timings
