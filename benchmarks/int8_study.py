"""What each onnxruntime setting buys the int8 model at batch 1, against OpenVINO on the same file.

One change at a time from the toolkit's default int8 artifact (QDQ, uint8
activations, per-channel int8 weights, minmax, all threads, optimization level
"all", spinning threads): thread count, spinning, optimization level, per-tensor
weights, int8 activations, residual Adds left in fp32, preprocessing inside the
graph (``--raw-input``); then raw-input with per-tensor weights combined, at
batch 1 and 64. (Residual Adds left in fp32 come out of onnxruntime's QDQ fusion
as the same QLinearAdd nodes as quantized ones, so that row measures noise.)
OpenVINO runs the default int8 file and the combined one for reference.
Every row is a fresh process (``resnet_edge.bench_worker``) timing end-to-end
calls from uint8 images to probabilities; the rows run three times in alternating
order and keep their best median. Each variant's top-1 agreement with fp32 on the
built-in sample's 1,000 test images shows what it costs in accuracy.

    python benchmarks/int8_study.py [--data-dir D] [--iters 1000] [--passes 3] [--json]

Calibration: 512 class-balanced train images (full data when --data-dir or
$RESNET_EDGE_DATA is set, else the built-in sample). About 5 minutes on 2 cores.
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
    """fp32 (normalized and raw-input graphs) and one int8 file per quantization variant."""
    if data_dir or os.environ.get(DATA_ENV_VAR):
        train = load_train_val(data_dir)[0]
    else:
        log("no --data-dir and no $RESNET_EDGE_DATA: calibrating on the built-in sample")
        train = load_sample("train")
    models, pre = {}, {}
    for name, raw in (("fp32", False), ("fp32 raw-input", True)):
        models[name] = work / f"{name.replace(' ', '_')}.onnx"
        export_onnx(reference_checkpoint(), models[name], raw_input=raw)
        pre[raw] = work / f"pre_{name.replace(' ', '_')}.onnx"
        preprocess(models[name], pre[raw])
    default, _ = settings_for_cpu(cpu_int8_support())
    adds = tuple(node.name for node in onnx.load(str(pre[False])).graph.node if node.op_type == "Add")
    per_tensor = replace(default, per_channel=False)
    variants = {  # name: (raw-input graph?, settings)
        "int8": (False, default),
        "int8 per-tensor": (False, per_tensor),
        "int8 int8-activations": (False, replace(default, activation_type="int8")),
        "int8 Adds in fp32": (False, default.with_fp32_nodes(adds)),
        "int8 raw-input": (True, default),
        "int8 raw-input, per-tensor": (True, per_tensor),
    }
    readers = {raw: CifarCalibrationReader.from_training_split(train, size=512) for raw in (False, True)}
    readers[True].raw_pixels = True
    for name, (raw, settings) in variants.items():
        log(f"quantizing: {name}")
        models[name] = work / f"{name.replace(' ', '_').replace(',', '')}.onnx"
        quantize_qdq(pre[raw], models[name], settings, readers[raw], work / f"ranges_{raw}.json")
    return models


def rows(models: dict[str, Path]) -> list[dict[str, Any]]:
    spin_off = {"session.intra_op.allow_spinning": "0"}
    fast = "int8 raw-input, per-tensor"
    table = [  # name, model, engine, threads, Predictor options, batch size
        ("onnxruntime fp32", "fp32", "onnxruntime", None, {}, 1),
        ("onnxruntime int8 (default)", "int8", "onnxruntime", None, {}, 1),
        ("  1 thread", "int8", "onnxruntime", 1, {}, 1),
        ("  spinning off", "int8", "onnxruntime", None, {"session_config": spin_off}, 1),
        ("  optimization extended", "int8", "onnxruntime", None, {"optimization": "extended"}, 1),
        ("  optimization basic", "int8", "onnxruntime", None, {"optimization": "basic"}, 1),
        ("  per-tensor weights", "int8 per-tensor", "onnxruntime", None, {}, 1),
        ("  int8 activations", "int8 int8-activations", "onnxruntime", None, {}, 1),
        ("  residual Adds in fp32", "int8 Adds in fp32", "onnxruntime", None, {}, 1),
        ("  raw-input graph", "int8 raw-input", "onnxruntime", None, {}, 1),
        ("  raw-input + per-tensor", fast, "onnxruntime", None, {}, 1),
        ("  raw-input + per-tensor, 1 thread", fast, "onnxruntime", 1, {}, 1),
        ("  raw-input + per-tensor, dyn. block 4", fast, "onnxruntime", None,
         {"session_config": {"session.dynamic_block_base": "4"}}, 1),
        ("onnxruntime int8 (default), b64", "int8", "onnxruntime", None, {}, 64),
        ("  raw-input + per-tensor, b64", fast, "onnxruntime", None, {}, 64),
    ]
    if importlib.util.find_spec("openvino") is not None:
        table += [("openvino int8", "int8", "openvino", None, {}, 1),
                  ("openvino int8, 1 thread", "int8", "openvino", 1, {}, 1),
                  ("openvino int8, raw-input + per-tensor", fast, "openvino", None, {}, 1),
                  ("openvino int8, b64", "int8", "openvino", None, {}, 64),
                  ("openvino int8, raw-input + per-tensor, b64", fast, "openvino", None, {}, 64)]
    else:
        log("openvino is not installed: its rows are left out")
    return [{"name": name, "model": str(models[key]), "engine": engine, "threads": threads,
             "predictor_options": options, "variant": key, "batch_size": batch}
            for name, key, engine, threads, options, batch in table]


def agreement(models: dict[str, Path]) -> dict[str, float]:
    test = load_sample("test").images
    fp32 = Predictor(models["fp32"]).predict(test).class_ids
    return {name: float((Predictor(path).predict(test).class_ids == fp32).mean())
            for name, path in models.items() if name.startswith("int8")}


def measure(plan: list[dict[str, Any]], iters: int, passes: int) -> list[dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for repeat in range(passes):
        for row in (plan if repeat % 2 == 0 else plan[::-1]):
            log(f"  {row['name'].strip()} (pass {repeat + 1}/{passes})")
            config = {key: row[key] for key in ("model", "engine", "threads", "predictor_options", "batch_size")}
            count = iters if row["batch_size"] == 1 else max(10, iters // 15)
            result = run_in_subprocess({**config, "warmup": max(5, count // 8), "iters": count})
            if row["name"] not in best or result["p50_ms"] < best[row["name"]]["p50_ms"]:
                best[row["name"]] = {**row, **result}
    return [best[row["name"]] for row in plan]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--iters", type=int, default=1000, help="timed batch-1 calls per row and pass")
    parser.add_argument("--passes", type=int, default=3, help="passes over all rows, in alternating order")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-int8-study-") as folder:
        models = build_models(Path(folder), args.data_dir)
        agree = agreement(models)
        results = measure(rows(models), args.iters, args.passes)
    if args.json:
        print(json.dumps({"results": results, "agreement": agree}, indent=2))
        return
    # Each row is compared with the default int8 model and with OpenVINO on it, at the row's batch size.
    base = {r["batch_size"]: r["p50_ms"] for r in results if r["name"].startswith("onnxruntime int8 (default)")}
    openvino = {r["batch_size"]: r["p50_ms"] for r in results if r["name"] in ("openvino int8", "openvino int8, b64")}
    print(f"{'end to end':<44}{'batch':>6}{'p50 ms':>9}{'img/s':>8}{'vs default':>12}{'vs OpenVINO':>13}"
          f"{'agree fp32':>12}")
    for r in results:
        batch = r["batch_size"]
        vs_ov = f"{r['p50_ms'] / openvino[batch]:.2f}×" if batch in openvino else "-"
        agree_text = f"{100 * agree[r['variant']]:.1f} %" if r["variant"] in agree else "-"
        print(f"{r['name']:<44}{batch:>6}{r['p50_ms']:>9.3f}{r['images_per_second']:>8.0f}"
              f"{r['p50_ms'] / base[batch]:>11.2f}×{vs_ov:>13}{agree_text:>12}")


if __name__ == "__main__":
    main()
