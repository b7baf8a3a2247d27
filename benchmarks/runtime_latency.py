"""The standard engine comparison on the reference model: PyTorch eager, onnxruntime and OpenVINO, fp32 and int8.

Targets (batch-1 p50, one run, this machine): the toolkit's best int8 artifact
(onnxruntime on the ``resnet-edge quantize`` model) at most 0.10× PyTorch eager
fp32 and at most 1.0× OpenVINO int8 on the same QDQ file; at batch 64 at least
OpenVINO int8's throughput.

Models: the shipped reference checkpoint (PyTorch eager), its fp32 ONNX export,
and its int8 model from ``quantize_onnx`` calibrated on 512 training images
(full data when $RESNET_EDGE_DATA or --data-dir is set, else the built-in
sample). Every (model, engine, batch) runs in a fresh process
(``resnet_edge.bench_worker``), end to end from uint8 images to probabilities,
with all cores unless --threads is given. The rounds run twice in alternating
order and the better median of each is kept, so a burst of background load does
not decide a ratio.

    python benchmarks/runtime_latency.py [--data-dir D] [--threads N] [--iters 300] [--json]

OpenVINO rows need ``pip install 'resnet-edge[openvino]'``; without it they are
left out and said so. A run takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from resnet_edge.bench_worker import run_in_subprocess
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.data import DATA_ENV_VAR, load_sample, load_train_val
from resnet_edge.export import export_onnx
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.reference import reference_checkpoint

TARGETS = {"int8_vs_torch_fp32": 0.10, "int8_vs_openvino_int8": 1.0, "batch64_vs_openvino_int8": 1.0}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prepare(work: Path, data_dir: str | None) -> dict[str, Path]:
    checkpoint = reference_checkpoint()
    fp32 = work / "reference.onnx"
    export_onnx(checkpoint, fp32)
    if data_dir or os.environ.get(DATA_ENV_VAR):
        train, val = load_train_val(data_dir)
    else:
        log("no --data-dir and no $RESNET_EDGE_DATA: calibrating on the built-in sample")
        train, val = load_sample("train"), load_sample("val")
    int8 = work / "reference.int8.onnx"
    quantize_onnx(fp32, int8, CifarCalibrationReader.from_training_split(train, size=512), val, log=log)
    return {"pt": checkpoint, "fp32": fp32, "int8": int8}


def measure(models: dict[str, Path], threads: int | None, iters: int) -> list[dict[str, Any]]:
    rows = [("torch fp32", models["pt"], "torch"), ("onnxruntime fp32", models["fp32"], "onnxruntime"),
            ("onnxruntime int8", models["int8"], "onnxruntime")]
    if importlib.util.find_spec("openvino") is not None:
        rows += [("openvino fp32", models["fp32"], "openvino"), ("openvino int8", models["int8"], "openvino")]
    else:
        log("openvino is not installed: its rows are left out (pip install 'resnet-edge[openvino]')")
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for repeat in range(2):
        for name, model, engine in (rows if repeat == 0 else rows[::-1]):
            for batch_size, count in ((1, iters), (64, max(10, iters // 15))):
                log(f"  {name}, batch {batch_size} (pass {repeat + 1}/2) ...")
                result = run_in_subprocess({"model": str(model), "engine": engine, "batch_size": batch_size,
                                            "threads": threads, "warmup": max(5, count // 10), "iters": count})
                key = (name, batch_size)
                if key not in best or result["p50_ms"] < best[key]["p50_ms"]:
                    best[key] = {"name": name, "engine": engine, "model": str(model), **result}
    return [best[(name, batch)] for name, _, _ in rows for batch in (1, 64)]


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    p50 = {(r["name"], r["batch_size"]): r["p50_ms"] for r in results}
    rate = {(r["name"], r["batch_size"]): r["images_per_second"] for r in results}
    out = {"int8_vs_torch_fp32": p50[("onnxruntime int8", 1)] / p50[("torch fp32", 1)],
           "int8_vs_onnxruntime_fp32": p50[("onnxruntime int8", 1)] / p50[("onnxruntime fp32", 1)]}
    if ("openvino int8", 1) in p50:
        out["int8_vs_openvino_int8"] = p50[("onnxruntime int8", 1)] / p50[("openvino int8", 1)]
        out["batch64_vs_openvino_int8"] = rate[("onnxruntime int8", 64)] / rate[("openvino int8", 64)]
        out["fp32_vs_openvino_fp32"] = p50[("onnxruntime fp32", 1)] / p50[("openvino fp32", 1)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for every engine (default: all)")
    parser.add_argument("--iters", type=int, default=300, help="timed batch-1 calls per row and pass (default 300)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-latency-") as folder:
        models = prepare(Path(folder), args.data_dir)
        results = measure(models, args.threads, args.iters)
    summary = ratios(results)
    if args.json:
        print(json.dumps({"results": results, "ratios": summary}, indent=2))
        return
    print(f"{'engine':<18}{'batch':>6}{'p50 ms':>10}{'p90 ms':>10}{'img/s':>10}{'peak RSS MB':>13}")
    for r in results:
        print(f"{r['name']:<18}{r['batch_size']:>6}{r['p50_ms']:>10.3f}{r['p90_ms']:>10.3f}"
              f"{r['images_per_second']:>10.0f}{r['peak_rss_mb']:>13.0f}")
    for name, value in summary.items():
        target = TARGETS.get(name)
        if target is None:
            print(f"{name}: {value:.3f}")
            continue
        met = value >= target if name.startswith("batch64") else value <= target
        print(f"{name}: {value:.3f} (target {'>=' if name.startswith('batch64') else '<='} {target}): "
              f"{'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
