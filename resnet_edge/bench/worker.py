"""One bench row in a process of its own: ``python -m resnet_edge.bench.worker '<json message>'``.

The bench runs every row (model, engine, provider, batch size, threads, streams) in a fresh process:
engines' thread pools fight when they share one (measured here: onnxruntime's
batch-1 latency read 11.5 ms beside torch and 3.0 ms alone), and a fresh process
makes its peak resident memory that row's alone.

The message is ``{"config": BenchConfig.to_dict(), "metadata": {...} or null}``; the worker prints one JSON
object on stdout, ``BenchResult.to_dict()`` or ``{"error": "..."}``. OpenVINO rows carry the model's resnet-edge
metadata, read by the parent, so that the measured process never opens an onnxruntime session.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.bench.rows import BenchConfig, BenchResult, BenchRow
from resnet_edge.errors import ResnetEdgeError

WORKER_TIMEOUT = 3600  # seconds for one row
WORKER_MODULE = "resnet_edge.bench.worker"


def measure(config: BenchConfig, metadata_props: Mapping[str, str] | None = None) -> BenchResult:
    """Time ``config`` in this process: load its engine, then time end-to-end calls on a random uint8 batch."""
    from resnet_edge.bench.engines import load_engine
    from resnet_edge.cifar10 import IMAGE_SIZE
    from resnet_edge.metadata import ModelMetadata
    from resnet_edge.runtime.bench import time_calls

    model = Path(config.model)
    metadata = ModelMetadata.from_props(dict(metadata_props), str(model)) if metadata_props else None
    options = dict(config.predictor_options)
    if config.provider:  # the onnxruntime execution provider the row is labelled with
        options["providers"] = [config.provider]
    classify, precision = load_engine(config.engine, model, config.batch_size, config.threads, metadata, options,
                                      config.streams)
    images = np.random.default_rng(0).integers(0, 256, (config.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3),
                                               dtype=np.uint8)
    stats = time_calls(lambda: classify(images), config.batch_size, config.warmup, config.iters, config.duration,
                       config.threads)
    return BenchResult(stats, precision, peak_rss_mb(), model.stat().st_size)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    Linux's VmHWM starts afresh at exec; ``ru_maxrss`` does not (it keeps the
    parent's peak from before the fork), so it is only the fallback elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux and bytes on macOS.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def run_in_subprocess(config: BenchConfig) -> BenchRow:
    """Measure ``config`` in a fresh Python process; its failure is a one-line ``ResnetEdgeError``."""
    metadata = None
    if config.engine == "openvino":
        from resnet_edge.runtime.session import read_metadata

        metadata = read_metadata(Path(config.model)).to_props()
    message = json.dumps({"config": config.to_dict(), "metadata": metadata})
    what = f"benchmarking {config.model} with {config.label}"
    try:
        completed = subprocess.run([sys.executable, "-m", WORKER_MODULE, message],
                                   capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ResnetEdgeError(f"{what} took over {WORKER_TIMEOUT} s; use fewer --iters or a shorter --duration"
                              ) from None
    lines = completed.stdout.strip().splitlines()
    try:
        reply: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        reply = {}
    if completed.returncode != 0 or "error" in reply or not reply:
        reason = reply.get("error") or (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ResnetEdgeError(f"{what} failed: {reason}")
    return BenchRow(config, BenchResult.from_dict(reply))


def main(argv: list[str] | None = None) -> int:
    """Run the row in ``argv[0]`` (default ``sys.argv[1:]``) and print its result or error as one JSON line."""
    message = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        result = measure(BenchConfig.from_dict(message["config"]), message.get("metadata"))
    except (ResnetEdgeError, OSError, ValueError) as exc:  # the user's problem: one line for the parent to show
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
