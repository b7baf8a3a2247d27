"""Pruned ResNet-18s against the unpruned reference: cost, accuracy and speed per ratio, with OpenVINO as the bar.

For each model (ratio 0 is the shipped reference; 0.3 the shipped pruned reference;
others as ``--model RATIO=CHECKPOINT``, e.g. runs of ``resnet-edge prune``): MACs per
image, parameters, the int8 file's size, val and test top-1 of the fp32 export and of
the default int8 model (``resnet-edge quantize``: calibrated on 512 training images,
gated on val), then batch-1 p50 and batch-64 images/s of that int8 file on
onnxruntime's CPU provider, and in the same run OpenVINO int8 of the unpruned reference
(the same int8 file). Every timed row runs in a fresh process, end to end from uint8
images (``resnet_edge.bench.worker``); rows run twice in alternating order and each
keeps its better median. Batch 64 runs in latency mode (one stream, all cores) and
throughput mode (one stream per core); each engine is credited with its faster mode,
as in ``runtime_latency.py``.

Targets for the published pruned reference (issue 15): int8 test top-1 >= 93.0 %,
batch-1 p50 <= 0.8x OpenVINO int8 of the reference, batch-64 >= 1.25x its throughput.

    python benchmarks/pruning.py --data-dir D [--model 0.5=runs/p50/best.pt ...] [--png pruning.png] [--json]

Takes about 4 minutes plus 1 per extra model on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from resnet_edge.bench.passes import best_of_passes
from resnet_edge.bench.rows import BenchConfig, BenchRow
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint
from resnet_edge.cli.table import format_table
from resnet_edge.data import load_split, load_train_val
from resnet_edge.evaluate import evaluate_model
from resnet_edge.export import export_onnx
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.figures import new_figure, png_bytes
from resnet_edge.files import atomic_write_bytes
from resnet_edge.hardware import this_cpu
from resnet_edge.model import count_macs, count_parameters
from resnet_edge.reference import PRUNED_REFERENCE, reference_checkpoint
from resnet_edge.runtime.session import CPU_PROVIDER, usable_cores

TARGETS = {"int8_test_top1": 0.930, "batch1_vs_openvino": 0.8, "batch64_vs_openvino": 1.25}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cpu_name() -> str:
    """``AMD EPYC, 2 cores, family 25 model 17``: the family and model tell Zen 4 (25) from Zen 5 (26) apart."""
    cpu = this_cpu()
    return cpu.describe() + (f", {cpu.family_model}" if cpu.family_model else "")


@dataclass
class Model:
    """One row of the table: a checkpoint, its exports and what was measured of them."""

    ratio: float
    checkpoint: Path
    macs: int = 0
    parameters: int = 0
    int8: Path | None = None
    int8_bytes: int = 0
    top1: dict[str, float] | None = None  # "fp32 val", "fp32 test", "int8 val", "int8 test"
    batch1_ms: float = 0.0
    batch64_img_s: float = 0.0


def prepare(model: Model, work: Path, train, val, test) -> None:
    """Export, quantize and score ``model`` (the test split only scores; nothing is chosen on it)."""
    net = model_from_checkpoint(load_checkpoint(model.checkpoint))
    model.macs, model.parameters = count_macs(net), count_parameters(net)
    fp32, model.int8 = work / f"r{model.ratio:g}.onnx", work / f"r{model.ratio:g}.int8.onnx"
    log(f"ratio {model.ratio:g}: export + quantize {model.checkpoint}")
    metadata = export_onnx(model.checkpoint, fp32).metadata  # calibrate with the model's own normalization
    reader = CifarCalibrationReader.from_training_split(train, mean=metadata.mean, std=metadata.std)
    quantize_onnx(fp32, model.int8, reader, val, log=lambda line: None)
    model.int8_bytes = model.int8.stat().st_size
    model.top1 = {f"{precision} {split.name}": evaluate_model(path, split)["top1"]
                  for precision, path in (("fp32", fp32), ("int8", model.int8)) for split in (val, test)}


def configs(path: Path, engine: str, iters: int) -> list[BenchConfig]:
    """Batch 1 on all cores; batch 64 in latency mode and, with several cores, one stream per core."""
    provider = CPU_PROVIDER if engine == "onnxruntime" else None
    rows = [BenchConfig(str(path), engine, 1, None, 1, warmup=max(5, iters // 10), iters=iters, provider=provider),
            BenchConfig(str(path), engine, 64, None, 1, warmup=3, iters=max(10, iters // 15), provider=provider)]
    if usable_cores() > 1:
        rows.append(BenchConfig(str(path), engine, 64, 1, usable_cores(), warmup=3, iters=max(10, iters // 15),
                                provider=provider))
    return rows


def speeds(rows: list[BenchRow]) -> tuple[float, float]:
    """Batch-1 p50 (ms) and the faster batch-64 mode's images/s of one engine's rows."""
    return (min(r.stats.p50_ms for r in rows if r.config.batch_size == 1),
            max(r.stats.images_per_second for r in rows if r.config.batch_size == 64))


def table(models: list[Model], openvino: tuple[float, float] | None) -> str:
    rows = []
    for m in models:
        ov = (f"{m.batch1_ms / openvino[0]:.2f}x", f"{m.batch64_img_s / openvino[1]:.2f}x") if openvino else ("", "")
        rows.append((f"{m.ratio:g}", f"{m.macs / 1e6:.0f} M", f"{m.parameters / 1e6:.2f} M",
                     f"{m.int8_bytes / 1e6:.1f} MB", *(f"{100 * m.top1[k]:.2f}" for k in
                                                       ("fp32 val", "fp32 test", "int8 val", "int8 test")),
                     f"{m.batch1_ms:.3f}", f"{m.batch64_img_s:.0f}", *ov))
    if openvino:
        ref = next((m for m in models if m.ratio == 0), None)
        rows.append(("0, OpenVINO", "", "", "", "", "", "", "" if ref is None else f"{100 * ref.top1['int8 test']:.2f}",
                     f"{openvino[0]:.3f}", f"{openvino[1]:.0f}", "1.00x", "1.00x"))
    return format_table(["ratio", "MACs", "params", "int8 size", "fp32 val", "fp32 test", "int8 val", "int8 test",
                         "int8 b1 p50 ms", "int8 b64 img/s", "b1 vs OV", "b64 vs OV"], rows)


def plot(models: list[Model], openvino: tuple[float, float] | None, path: Path) -> None:
    """int8 test top-1 against batch-1 latency, one point per model; OpenVINO int8 of the reference as a line."""
    figure = new_figure(7, 4.5)
    axis = figure.subplots()
    axis.plot([m.batch1_ms for m in models], [100 * m.top1["int8 test"] for m in models], "o-",
              label="onnxruntime CPU int8")
    for m in models:
        axis.annotate(f"ratio {m.ratio:g}\n{m.macs / 1e6:.0f} M MACs", (m.batch1_ms, 100 * m.top1["int8 test"]),
                      textcoords="offset points", xytext=(6, -4), fontsize=8)
    if openvino:
        axis.axvline(openvino[0], linestyle="--", color="gray", label="OpenVINO int8, unpruned reference")
        axis.axvline(0.8 * openvino[0], linestyle=":", color="gray", label="0.8x OpenVINO (target)")
    axis.axhline(93.0, linestyle=":", color="tab:red", label="93.0 % (target)")
    axis.set_xlabel("batch-1 p50 latency, ms (uint8 image in, probabilities out)")
    axis.set_ylabel("int8 test top-1, %")
    axis.set_title(f"Pruned ResNet-18 on CIFAR-10, {cpu_name()}", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    atomic_write_bytes(path, png_bytes(figure))


def parse_model(text: str) -> tuple[float, Path]:
    ratio, sep, path = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--model {text!r} is not RATIO=CHECKPOINT")
    return float(ratio), Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder [default: $RESNET_EDGE_DATA]")
    parser.add_argument("--model", type=parse_model, action="append", default=[],
                        help="RATIO=CHECKPOINT of a pruned model, repeatable (0 and 0.3 are the shipped references)")
    parser.add_argument("--iters", type=int, default=300, help="timed batch-1 calls per row and pass (default 300)")
    parser.add_argument("--png", type=Path, default=None, help="write the accuracy-latency chart here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    checkpoints = {0.0: reference_checkpoint(), 0.3: reference_checkpoint(PRUNED_REFERENCE), **dict(args.model)}
    models = [Model(ratio, path) for ratio, path in sorted(checkpoints.items())]
    train, val = load_train_val(args.data_dir)
    test = load_split("test", args.data_dir)
    with tempfile.TemporaryDirectory(prefix="resnet-edge-pruning-") as folder:
        for model in models:
            prepare(model, Path(folder), train, val, test)
        plan = [(m.ratio, c) for m in models for c in configs(m.int8, "onnxruntime", args.iters)]
        reference = next(m for m in models if m.ratio == 0)
        has_openvino = importlib.util.find_spec("openvino") is not None
        if has_openvino:
            plan += [("openvino", c) for c in configs(reference.int8, "openvino", args.iters)]
        else:
            log("openvino is not installed: its rows are left out (pip install 'resnet-edge[openvino]')")
        rows = best_of_passes([c for _, c in plan], 2, log=log,
                              names=[f"{key} · {c.label} · batch {c.batch_size} · {c.streams} stream(s)"
                                     for key, c in plan])
    by_key: dict[object, list[BenchRow]] = {}
    for (key, _), row in zip(plan, rows):
        by_key.setdefault(key, []).append(row)
    for model in models:
        model.batch1_ms, model.batch64_img_s = speeds(by_key[model.ratio])
    openvino = speeds(by_key["openvino"]) if has_openvino else None

    if args.png:
        plot(models, openvino, args.png)
    published = next(m for m in models if m.ratio == 0.3)
    checks = {"int8_test_top1": published.top1["int8 test"]}
    if openvino:
        checks |= {"batch1_vs_openvino": published.batch1_ms / openvino[0],
                   "batch64_vs_openvino": published.batch64_img_s / openvino[1]}
    if args.json:
        print(json.dumps({"cpu": cpu_name(), "openvino_int8": openvino, "targets": checks,
                          "models": [{**vars(m), "checkpoint": str(m.checkpoint), "int8": None} for m in models]},
                         indent=2))
        return
    print(cpu_name())
    print(table(models, openvino))
    for name, value in checks.items():
        target = TARGETS[name]
        met = value <= target if name == "batch1_vs_openvino" else value >= target
        print(f"published pruned reference (ratio 0.3) {name}: {value:.3f} (target "
              f"{'<=' if name == 'batch1_vs_openvino' else '>='} {target}): {'met' if met else 'NOT MET'}")
    if args.png:
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
