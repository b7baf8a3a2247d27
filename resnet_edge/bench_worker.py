"""One bench measurement in a process of its own: ``python -m resnet_edge.bench_worker '<json config>'``.

The bench runs every (model, engine, batch size, threads, streams) in a fresh process:
engines' thread pools fight when they share one (measured here: onnxruntime's
batch-1 latency read 11.5 ms beside torch and 3.0 ms alone), and a fresh process
makes its peak resident memory that configuration's alone. Prints one JSON
object on stdout: the latency statistics and ``peak_rss_mb``, or ``error``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


WORKER_TIMEOUT = 3600  # seconds for one row


def measure(config: dict[str, Any]) -> dict[str, Any]:
    from resnet_edge.cifar10 import IMAGE_SIZE
    from resnet_edge.engines import load_engine
    from resnet_edge.metadata import ModelMetadata
    from resnet_edge.runtime.bench import time_calls

    model = Path(config["model"])
    batch_size, threads = int(config["batch_size"]), config.get("threads")
    metadata = ModelMetadata.from_props(config["metadata"], str(model)) if config.get("metadata") else None
    options = dict(config.get("predictor_options") or {})
    if config.get("provider"):  # the onnxruntime execution provider the row is labelled with
        options["providers"] = [config["provider"]]
    classify, precision = load_engine(config["engine"], model, batch_size, threads, metadata, options,
                                      int(config.get("streams") or 1))
    images = np.random.default_rng(0).integers(0, 256, (batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    stats = time_calls(lambda: classify(images), batch_size, int(config["warmup"]), int(config["iters"]),
                       config.get("duration"), threads)
    return {**stats.to_dict(), "precision": precision, "peak_rss_mb": peak_rss_mb()}


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


def run_in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`measure` on ``config`` in a fresh Python process and return its result."""
    from resnet_edge.errors import ResnetEdgeError

    if config["engine"] == "openvino" and "metadata" not in config:
        from resnet_edge.runtime.session import read_metadata

        config = {**config, "metadata": read_metadata(Path(config["model"])).to_props()}
    try:
        completed = subprocess.run([sys.executable, "-m", "resnet_edge.bench_worker", json.dumps(config)],
                                   capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ResnetEdgeError(f"benchmarking {config['model']} with {config['engine']} took over "
                              f"{WORKER_TIMEOUT} s; use fewer --iters or a shorter --duration") from None
    lines = completed.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    if completed.returncode != 0 or "error" in result or not result:
        reason = result.get("error") or (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise ResnetEdgeError(f"benchmarking {config['model']} with {config['engine']} failed: {reason}")
    return result


def main() -> int:
    from resnet_edge.errors import ResnetEdgeError

    try:
        result = measure(json.loads(sys.argv[1]))
    except (ResnetEdgeError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
