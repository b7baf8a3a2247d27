"""What each onnxruntime setting buys the int8 model at batch 1, against OpenVINO on the same file.

One change at a time from the toolkit's default int8 artifact (QDQ, uint8
activations, per-channel int8 weights, minmax, all threads, optimization level
"all", spinning threads): thread count, spinning, optimization level, per-tensor
weights, int8 activations, residual Adds left in fp32, preprocessing inside the
graph (``--raw-input``); then raw-input with per-tensor weights combined, at
batch 1 and 64. (Residual Adds left in fp32 come out of onnxruntime's QDQ fusion
as the same QLinearAdd nodes as quantized ones, so that row measures noise.)
OpenVINO runs the default int8 file and the combined one for reference.
Every row is a fresh process (``resnet_edge.bench.worker``) timing end-to-end
calls from uint8 images to probabilities; the rows run three times in alternating
order and keep their best median (``resnet_edge.bench.passes.best_of_passes``).
Each variant's top-1 agreement with fp32 on the built-in sample's 1,000 test
images shows what it costs in accuracy.

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
from typing import NamedTuple

import onnx

from resnet_edge.bench.passes import best_of_passes
from resnet_edge.bench.rows import BenchConfig, BenchRow
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.cli.table import format_table
from resnet_edge.data import DATA_ENV_VAR, load_sample, load_train_val
from resnet_edge.export import export_onnx
from resnet_edge.export.cpu_features import cpu_int8_support
from resnet_edge.export.qdq import preprocess, quantize_qdq, settings_for_cpu
from resnet_edge.reference import reference_checkpoint
from resnet_edge.runtime.predictor import Predictor


class Planned(NamedTuple):
    """A row of the study: its name, the model variant it runs (for its agreement with fp32), what to measure."""

    name: str
    variant: str
    config: BenchConfig


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
    readers = {raw: CifarCalibrationReader.from_training_split(train, raw_pixels=raw)
               for raw in (False, True)}
    for name, (raw, settings) in variants.items():
        log(f"quantizing: {name}")
        models[name] = work / f"{name.replace(' ', '_').replace(',', '')}.onnx"
        quantize_qdq(pre[raw], models[name], settings, readers[raw], work / f"ranges_{raw}.json")
    return models


def study_rows(models: dict[str, Path], iters: int) -> list[Planned]:
    """One change at a time from the default int8 model; ``iters`` timed calls at batch 1, fewer at batch 64."""
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
    planned = []
    for name, key, engine, threads, options, batch in table:
        count = iters if batch == 1 else max(10, iters // 15)
        config = BenchConfig(str(models[key]), engine, batch, threads, warmup=max(5, count // 8), iters=count,
                             predictor_options=options)
        planned.append(Planned(name, key, config))
    return planned


def agreement(models: dict[str, Path]) -> dict[str, float]:
    test = load_sample("test").images
    fp32 = Predictor(models["fp32"]).predict(test).class_ids
    return {name: float((Predictor(path).predict(test).class_ids == fp32).mean())
            for name, path in models.items() if name.startswith("int8")}


def print_table(planned: list[Planned], results: list[BenchRow], agree: dict[str, float]) -> None:
    """Each row against the default int8 model and against OpenVINO on it, at the row's batch size."""
    p50 = {plan.name: row.stats.p50_ms for plan, row in zip(planned, results)}
    base = {1: p50["onnxruntime int8 (default)"], 64: p50["onnxruntime int8 (default), b64"]}
    openvino = {batch: p50[name] for batch, name in ((1, "openvino int8"), (64, "openvino int8, b64")) if name in p50}
    cells = []
    for plan, row in zip(planned, results):
        batch = row.config.batch_size
        cells.append((plan.name, batch, f"{row.stats.p50_ms:.3f}", f"{row.stats.images_per_second:.0f}",
                      f"{row.stats.p50_ms / base[batch]:.2f}×",
                      f"{row.stats.p50_ms / openvino[batch]:.2f}×" if batch in openvino else "-",
                      f"{100 * agree[plan.variant]:.1f} %" if plan.variant in agree else "-"))
    print(format_table(["end to end", "batch", "p50 ms", "img/s", "vs default", "vs OpenVINO", "agree fp32"], cells))


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
        planned = study_rows(models, args.iters)
        results = best_of_passes([plan.config for plan in planned], args.passes,
                                 names=[plan.name.strip() for plan in planned], log=log)
    if args.json:
        print(json.dumps({"results": [{"name": plan.name, "variant": plan.variant, **row.to_dict()}
                                      for plan, row in zip(planned, results)], "agreement": agree}, indent=2))
        return
    print_table(planned, results, agree)


if __name__ == "__main__":
    main()
