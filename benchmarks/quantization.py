"""int8 against fp32 on one model: the three calibration methods, and int8's latency and size ratios.

Targets (reference model, one run on one machine): int8 test top-1 within 0.3
points of fp32, top-1 agreement ≥ 99 %, batch-1 latency ≤ 0.30× fp32, file size
≤ 0.27× fp32, quantization (512 calibration images) under 60 s.

For each method (minmax, entropy, percentile) it quantizes the model with
``resnet_edge.export.quantize.quantize_onnx`` (calibration: class-balanced
images of the train split; the gate measures on val and is set wide open so
every method is reported), then scores fp32 and int8 on the test split. The
method with the best val top-1 (then agreement, then speed) is named the best:
val, never test, picks it. Latency is the Predictor's end-to-end batch-1 p50
of fp32 and of that int8 model, timed in alternating rounds in this process
(``resnet_edge.bench.passes.interleaved_timings``) so machine noise hits both
alike; batch 64 throughput likewise. A ``--raw-input`` model is calibrated on
the raw pixels it takes.

    python benchmarks/quantization.py [MODEL.onnx] [--data-dir D] [--calib-size 512] [--iters 600]
                                      [--threads N] [--json]

Without MODEL it exports the shipped reference checkpoint (needs torch). Data
comes from --data-dir or $RESNET_EDGE_DATA; without either, from the built-in
sample (and the output says so). On a 2-core AVX-512-VNNI CPU a full-data run
takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.bench.passes import interleaved_timings
from resnet_edge.calibration import DEFAULT_CALIBRATION_IMAGES, CifarCalibrationReader
from resnet_edge.cli.table import format_table
from resnet_edge.data import DATA_ENV_VAR, Split, load_sample, load_split, load_train_val
from resnet_edge.export.accuracy_gate import compare, onnx_logits
from resnet_edge.export.qdq import METHODS
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.runtime.predictor import Predictor

TARGETS = {"test_drop_points": 0.3, "test_agreement": 0.99, "latency_ratio": 0.30, "size_ratio": 0.27,
           "quantize_seconds": 60.0}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_splits(data_dir: str | None) -> tuple[Split, Split, Split]:
    if data_dir or os.environ.get(DATA_ENV_VAR):
        train, val = load_train_val(data_dir)
        return train, val, load_split("test", data_dir)
    log(f"no --data-dir and no ${DATA_ENV_VAR}: using the built-in sample (figures are rough)")
    return load_sample("train"), load_sample("val"), load_sample("test")


def latency(fp32: Path, int8: Path, batch_size: int, iters: int, threads: int | None) -> dict[str, float]:
    """p50 ms and img/s of both models, timed in alternating rounds."""
    images = load_sample("test").images[:batch_size]
    predictors = [Predictor(fp32, threads=threads), Predictor(int8, threads=threads)]
    calls = [lambda p=p: p.predict(images) for p in predictors]
    timings = interleaved_timings(calls, iters, warmup=max(10, iters // 20)) * 1e3
    p50 = np.percentile(timings, 50, axis=1)
    return {"fp32_p50_ms": float(p50[0]), "int8_p50_ms": float(p50[1]), "ratio": float(p50[1] / p50[0]),
            "fp32_img_s": batch_size * 1e3 / float(p50[0]), "int8_img_s": batch_size * 1e3 / float(p50[1])}


def run(model: Path, data_dir: str | None, calib_size: int, iters: int, threads: int | None,
        work: Path) -> dict[str, Any]:
    train, val, test = load_splits(data_dir)
    metadata = Predictor(model).metadata
    fp32_test = onnx_logits(model, test)
    methods = []
    for method in METHODS:
        output = work / f"{method}.int8.onnx"
        reader = CifarCalibrationReader.from_training_split(train, size=calib_size, raw_pixels=metadata.raw_input)
        log(f"quantizing with {method} ...")
        result = quantize_onnx(model, output, reader, val, method=method, max_drop=100.0, log=lambda line: None)
        on_test = compare(fp32_test, onnx_logits(output, test), test, metadata.class_names)
        methods.append({
            "method": method,
            "output": output,
            "quantize_seconds": result.seconds,
            "val": result.comparison.to_dict(),
            "test": on_test.to_dict(),
            "size_ratio": result.int8_bytes / result.fp32_bytes,
            "settings": result.settings.to_dict(),
            "cpu": result.cpu,
        })
    best = max(methods, key=lambda m: (m["val"]["int8_top1"], m["val"]["agreement"], -m["quantize_seconds"]))
    log(f"timing fp32 against {best['method']} int8 ...")
    batch1 = latency(model, best["output"], 1, iters, threads)
    batch64 = latency(model, best["output"], 64, max(20, iters // 20), threads)
    for entry in methods:
        entry["output"] = str(entry["output"])
    return {"model": str(model), "data": test.source, "calibration_images": calib_size, "threads": threads,
            "methods": methods, "best_on_val": best["method"], "batch1": batch1, "batch64": batch64}


def print_report(report: dict[str, Any]) -> None:
    print(f"model {report['model']}; data {report['data']}; {report['calibration_images']} calibration images "
          f"(train split); CPU {report['methods'][0]['cpu']}")
    header = ("method", "quantize s", "val fp32", "val int8", "test fp32", "test int8", "test drop", "agreement",
              "size")
    print(format_table(header, [
        (m["method"], f"{m['quantize_seconds']:.1f}", f"{100 * m['val']['fp32_top1']:.2f}",
         f"{100 * m['val']['int8_top1']:.2f}", f"{100 * m['test']['fp32_top1']:.2f}",
         f"{100 * m['test']['int8_top1']:.2f}", f"{m['test']['drop_points']:+.2f}",
         f"{100 * m['test']['agreement']:.2f}", f"{m['size_ratio']:.3f}×") for m in report["methods"]]))
    best = next(m for m in report["methods"] if m["method"] == report["best_on_val"])
    b1, b64 = report["batch1"], report["batch64"]
    print(f"best on val: {best['method']}")
    print(f"batch 1 p50: fp32 {b1['fp32_p50_ms']:.3f} ms, int8 {b1['int8_p50_ms']:.3f} ms")
    print(f"batch 64: fp32 {b64['fp32_img_s']:.0f} img/s, int8 {b64['int8_img_s']:.0f} img/s "
          f"({b64['int8_img_s'] / b64['fp32_img_s']:.2f}×)")
    checks = [
        ("test top-1 drop (points)", best["test"]["drop_points"], TARGETS["test_drop_points"], "<="),
        ("test top-1 agreement", best["test"]["agreement"], TARGETS["test_agreement"], ">="),
        ("batch-1 latency int8 / fp32", b1["ratio"], TARGETS["latency_ratio"], "<="),
        ("size int8 / fp32", best["size_ratio"], TARGETS["size_ratio"], "<="),
        ("quantization seconds", best["quantize_seconds"], TARGETS["quantize_seconds"], "<="),
    ]
    for name, value, target, op in checks:
        ok = value <= target if op == "<=" else value >= target
        print(f"{name}: {value:.3f} (target {op} {target}): {'met' if ok else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="fp32 ONNX model; default: export the reference model")
    parser.add_argument("--data-dir", default=None, help=f"CIFAR-10 folder (default: ${DATA_ENV_VAR})")
    parser.add_argument("--calib-size", type=int, default=DEFAULT_CALIBRATION_IMAGES)
    parser.add_argument("--iters", type=int, default=600, help="timed batch-1 calls per model (default 600)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-quant-bench-") as folder:
        work = Path(folder)
        model = args.model
        if model is None:
            from resnet_edge.export import export_onnx
            from resnet_edge.reference import reference_checkpoint

            model = work / "reference.onnx"
            export_onnx(reference_checkpoint(), model)
        report = run(model, args.data_dir, args.calib_size, args.iters, args.threads, work)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
