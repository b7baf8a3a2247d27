"""What each onnxruntime setting buys the int8 model at batch 1, against OpenVINO on the same file.

One change at a time from the toolkit's default int8 artifact (QDQ, uint8
activations, per-channel int8 weights, minmax, all threads, optimization level
"all", spinning threads): thread count, spinning, optimization level, per-tensor
weights, int8 activations, residual Adds left in fp32, preprocessing inside the
graph (``--raw-input``). OpenVINO runs the default int8 file for reference.
Every row is a fresh process (``resnet_edge.bench_worker``) timing end-to-end
calls from uint8 images to probabilities; the rows run twice in alternating order
and keep their better median. Each variant's top-1 agreement with fp32 on the
built-in sample's 1,000 test images shows what it costs in accuracy.

    python benchmarks/int8_study.py [--data-dir D] [--iters 400] [--json]

Calibration: 512 class-balanced train images (full data when --data-dir or
$RESNET_EDGE_DATA is set, else the built-in sample). About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from resnet_edge.bench_worker import run_in_subprocess
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.data import DATA_ENV_VAR, load_sample, load_train_val
from resnet_edge.export import export_onnx
from resnet_edge.export.cpu_features import cpu_int8_support
from resnet_edge.export.qdq import preprocess, quantize_qdq, settings_for_cpu
from resnet_edge.reference import reference_checkpoint
from resnet_edge.runtime.predictor import Predictor


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_models(work: Path, data_dir: str | None) -> dict[str, Path]:
    """fp32, the default int8 and one int8 file per quantization variant."""
    if data_dir or os.environ.get(DATA_ENV_VAR):
        train = load_train_val(data_dir)[0]
    else:
        log("no --data-dir and no $RESNET_EDGE_DATA: calibrating on the built-in sample")
        train = load_sample("train")
    models = {}
    for name, raw in (("fp32", False), ("fp32 raw-input", True)):
        models[name] = work / f"{name.replace(' ', '_')}.onnx"
        export_onnx(reference_checkpoint(), models[name], raw_input=raw)
    default, _ = settings_for_cpu(cpu_int8_support())
    pre = work / "pre.onnx"
    preprocess(models["fp32"], pre)
    adds = tuple(node.name for node in onnx.load(str(pre)).graph.node if node.op_type == "Add")
    variants = {
        "int8": default,
        "int8 per-tensor": replace(default, per_channel=False),
        "int8 int8-activations": replace(default, activation_type="int8"),
        "int8 Adds in fp32": default.with_fp32_nodes(adds),
    }
    reader = CifarCalibrationReader.from_training_split(train, size=512)
    for name, settings in variants.items():
        log(f"quantizing: {name}")
        models[name] = work / f"{name.replace(' ', '_')}.onnx"
        quantize_qdq(pre, models[name], settings, reader, work / "ranges.json")
    raw_pre = work / "raw_pre.onnx"
    preprocess(models["fp32 raw-input"], raw_pre)
    reader.raw_pixels = True
    log("quantizing: int8 raw-input")
    models["int8 raw-input"] = work / "int8_raw-input.onnx"
    quantize_qdq(raw_pre, models["int8 raw-input"], default, reader, work / "raw_ranges.json")
    return models


def rows(models: dict[str, Path]) -> list[dict[str, Any]]:
    spin_off = {"session.intra_op.allow_spinning": "0"}
    table = [
        ("onnxruntime fp32", "fp32", "onnxruntime", None, {}),
        ("onnxruntime int8 (default)", "int8", "onnxruntime", None, {}),
        ("  1 thread", "int8", "onnxruntime", 1, {}),
        ("  spinning off", "int8", "onnxruntime", None, {"session_config": spin_off}),
        ("  optimization extended", "int8", "onnxruntime", None, {"optimization": "extended"}),
        ("  optimization basic", "int8", "onnxruntime", None, {"optimization": "basic"}),
        ("  per-tensor weights", "int8 per-tensor", "onnxruntime", None, {}),
        ("  int8 activations", "int8 int8-activations", "onnxruntime", None, {}),
        ("  residual Adds in fp32", "int8 Adds in fp32", "onnxruntime", None, {}),
        ("  raw-input graph", "int8 raw-input", "onnxruntime", None, {}),
        ("  raw-input graph, 1 thread", "int8 raw-input", "onnxruntime", 1, {}),
    ]
    if importlib.util.find_spec("openvino") is not None:
        table += [("openvino int8", "int8", "openvino", None, {}), ("openvino int8, 1 thread", "int8", "openvino", 1, {})]
    else:
        log("openvino is not installed: its rows are left out")
    return [{"name": name, "model": str(models[key]), "engine": engine, "threads": threads,
             "predictor_options": options, "variant": key} for name, key, engine, threads, options in table]


def agreement(models: dict[str, Path]) -> dict[str, float]:
    test = load_sample("test").images
    fp32 = Predictor(models["fp32"]).predict(test).class_ids
    return {name: float((Predictor(path).predict(test).class_ids == fp32).mean())
            for name, path in models.items() if name.startswith("int8")}


def measure(plan: list[dict[str, Any]], iters: int) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for repeat in range(2):
        for row in (plan if repeat == 0 else plan[::-1]):
            log(f"  {row['name'].strip()} (pass {repeat + 1}/2)")
            config = {key: row[key] for key in ("model", "engine", "threads", "predictor_options")}
            result = run_in_subprocess({**config, "batch_size": 1, "warmup": 50, "iters": iters})
            if row["name"] not in best or result["p50_ms"] < best[row["name"]]["p50_ms"]:
                best[row["name"]] = {**row, **result}
    return [best[row["name"]] for row in plan]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-int8-study-") as folder:
        models = build_models(Path(folder), args.data_dir)
        agree = agreement(models)
        results = measure(rows(models), args.iters)
    base = next(r for r in results if r["name"] == "onnxruntime int8 (default)")["p50_ms"]
    openvino = next((r["p50_ms"] for r in results if r["name"] == "openvino int8"), None)
    if args.json:
        print(json.dumps({"results": results, "agreement": agree}, indent=2))
        return
    print(f"{'batch 1, end to end':<32}{'p50 ms':>9}{'vs default':>12}{'vs OpenVINO':>13}{'agree fp32':>12}")
    for r in results:
        vs_ov = f"{r['p50_ms'] / openvino:.2f}×" if openvino else "-"
        agree_text = f"{100 * agree[r['variant']]:.1f} %" if r["variant"] in agree else "-"
        print(f"{r['name']:<32}{r['p50_ms']:>9.3f}{r['p50_ms'] / base:>11.2f}×{vs_ov:>13}{agree_text:>12}")


if __name__ == "__main__":
    main()
