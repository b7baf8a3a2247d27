"""The standard engine comparison on the reference model: PyTorch eager, onnxruntime and OpenVINO, fp32 and int8.

Targets (one run, this machine): the toolkit's best int8 artifact through the
``Predictor`` at most 0.10× PyTorch eager fp32 at batch 1 and at most 1.0×
OpenVINO int8 at batch 1; at batch 64 at least OpenVINO int8's throughput.
Both sides get their best: each ratio takes the fastest int8 row of each engine,
over both int8 files and, at batch 64, both modes (latency: one stream with all
cores; throughput: one stream per core).

Models: the shipped reference checkpoint (PyTorch eager); its fp32 ONNX export;
the default ``resnet-edge quantize`` int8 model; and the candidate that
``int8_study.py`` found fastest one change at a time (``export --raw-input`` +
``quantize --per-tensor``: preprocessing inside the graph, one weight scale per
tensor), both calibrated on 512 training images (full data when $RESNET_EDGE_DATA or
--data-dir is set, else the built-in sample) behind the accuracy gate. Every
row runs in a fresh process (``resnet_edge.bench.worker``), end to end from
uint8 images to probabilities. Batch 1 uses all cores; batch 64 runs both in
latency mode (all cores, one stream) and in throughput mode (``--threads 1
--streams <cores>``). The rows run twice in alternating order and the better
median of each is kept (``resnet_edge.bench.passes.best_of_passes``), so a burst
of background load does not decide a ratio.

    python benchmarks/runtime_latency.py [--data-dir D] [--iters 300] [--json]

OpenVINO rows need ``pip install 'resnet-edge[openvino]'``; without it they are
left out and said so. Where onnxruntime offers the OpenVINO execution provider
(the ``onnxruntime-openvino`` build, installed in place of ``onnxruntime``), the
two int8 files also run through the ``Predictor`` on it, and the ratios are
printed twice: over all onnxruntime rows, then over the CPU provider's alone.
A run takes about 5 minutes on 2 cores (7 with the execution provider's rows).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort

from resnet_edge.bench.passes import best_of_passes
from resnet_edge.bench.rows import BenchConfig, BenchRow
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.cli.table import format_table
from resnet_edge.data import DATA_ENV_VAR, load_sample, load_train_val
from resnet_edge.export import export_onnx
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.reference import reference_checkpoint
from resnet_edge.runtime.session import CPU_PROVIDER, OPENVINO_PROVIDER, usable_cores

TARGETS = {"int8_vs_torch_fp32": 0.10, "int8_vs_openvino_int8": 1.0, "batch64_vs_openvino_int8": 1.0}
RAW_PER_TENSOR = "int8 raw-input per-tensor"
Named = tuple[str, BenchRow]  # a row and the name the table prints for it


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prepare(work: Path, data_dir: str | None) -> dict[str, Path]:
    checkpoint = reference_checkpoint()
    if data_dir or os.environ.get(DATA_ENV_VAR):
        train, val = load_train_val(data_dir)
    else:
        log("no --data-dir and no $RESNET_EDGE_DATA: calibrating on the built-in sample")
        train, val = load_sample("train"), load_sample("val")
    models = {"pt": checkpoint, "fp32": work / "reference.onnx", "fp32 raw-input": work / "reference.raw.onnx"}
    export_onnx(checkpoint, models["fp32"])
    export_onnx(checkpoint, models["fp32 raw-input"], raw_input=True)
    for name, source, per_channel in (("int8", "fp32", True), (RAW_PER_TENSOR, "fp32 raw-input", False)):
        models[name] = work / f"{name.replace(' ', '_')}.onnx"
        log(f"quantizing: {name}")
        reader = CifarCalibrationReader.from_training_split(train, raw_pixels=source == "fp32 raw-input")
        quantize_onnx(models[source], models[name], reader, val, per_channel=per_channel, log=log)
    return models


def plan(models: dict[str, Path], iters: int, threads: int | None) -> tuple[list[str], list[BenchConfig]]:
    """Each row's name and config: every engine at batch 1 and 64, and batch 64 also in throughput mode.

    ``threads`` (None: all cores) applies to the one-stream rows; throughput rows keep one thread per stream.
    """
    cores = usable_cores()
    engines = [("torch fp32", "pt", "torch", None), ("onnxruntime fp32", "fp32", "onnxruntime", CPU_PROVIDER),
               ("onnxruntime int8", "int8", "onnxruntime", CPU_PROVIDER),
               (f"onnxruntime {RAW_PER_TENSOR}", RAW_PER_TENSOR, "onnxruntime", CPU_PROVIDER)]
    if OPENVINO_PROVIDER in ort.get_available_providers():
        engines += [("onnxruntime int8, OpenVINO EP", "int8", "onnxruntime", OPENVINO_PROVIDER),
                    (f"onnxruntime {RAW_PER_TENSOR}, OpenVINO EP", RAW_PER_TENSOR, "onnxruntime", OPENVINO_PROVIDER)]
    else:
        log("this onnxruntime has no OpenVINO execution provider: its rows are left out "
            "(pip install onnxruntime-openvino in place of onnxruntime)")
    if importlib.util.find_spec("openvino") is not None:
        engines += [("openvino fp32", "fp32", "openvino", None), ("openvino int8", "int8", "openvino", None),
                    (f"openvino {RAW_PER_TENSOR}", RAW_PER_TENSOR, "openvino", None)]
    else:
        log("openvino is not installed: its rows are left out (pip install 'resnet-edge[openvino]')")
    modes = [("", 1, threads, 1), ("", 64, threads, 1)]  # (name suffix, batch, threads, streams)
    if cores > 1:
        modes.append((f", {cores} streams", 64, 1, cores))
    names, configs = [], []
    for name, key, engine, provider in engines:
        for suffix, batch, mode_threads, streams in modes:
            if streams > 1 and engine == "torch":
                continue
            count = iters if batch == 1 else max(10, iters // 15)
            names.append(name + suffix)
            configs.append(BenchConfig(str(models[key]), engine, batch, mode_threads, streams,
                                       warmup=max(5, count // 10), iters=count, provider=provider))
    return names, configs


def ratios(results: list[Named], provider: str | None = None
           ) -> tuple[dict[str, float], dict[int, tuple[str, str | None]]]:
    """The target ratios, and which rows each batch size compared (ours, OpenVINO's).

    Ours are the onnxruntime rows, on any execution provider or only on ``provider``.
    """
    def fastest(engine: str, precision: str, batch: int) -> Named | None:
        """An engine's fastest row for ``precision`` at ``batch``, over its files, modes and providers.

        Fastest by the measure its ratio takes: p50 latency at batch 1, throughput at batch 64.
        """
        rows = [(name, row) for name, row in results
                if (row.config.engine, row.result.precision, row.config.batch_size) == (engine, precision, batch)
                and (engine != "onnxruntime" or provider in (None, row.config.provider))]
        if not rows:
            return None
        if batch == 1:
            return min(rows, key=lambda named: named[1].stats.p50_ms)
        return max(rows, key=lambda named: named[1].stats.images_per_second)

    def p50(named: Named | None) -> float:
        assert named is not None, "plan() measures every row a ratio compares"
        return named[1].stats.p50_ms

    ours = {batch: fastest("onnxruntime", "int8", batch) for batch in (1, 64)}
    fp32 = fastest("onnxruntime", "fp32", 1)
    out = {"int8_vs_torch_fp32": p50(ours[1]) / p50(fastest("torch", "fp32", 1)),
           "int8_vs_onnxruntime_fp32": p50(ours[1]) / p50(fp32)}
    theirs = {batch: fastest("openvino", "int8", batch) for batch in (1, 64)}
    if theirs[1] is not None:
        out["int8_vs_openvino_int8"] = p50(ours[1]) / p50(theirs[1])
        out["batch64_vs_openvino_int8"] = ours[64][1].stats.images_per_second / theirs[64][1].stats.images_per_second
        out["fp32_vs_openvino_fp32"] = p50(fp32) / p50(fastest("openvino", "fp32", 1))
    return out, {batch: (ours[batch][0], theirs[batch][0] if theirs[batch] else None) for batch in (1, 64)}


def print_ratios(summary: dict[str, float], compared: dict[int, tuple[str, str | None]]) -> None:
    for batch, (ours, theirs) in compared.items():
        versus = f" vs OpenVINO's '{theirs}'" if theirs else ""
        print(f"batch {batch}: fastest onnxruntime int8 row '{ours}'{versus}")
    for name, value in summary.items():
        target = TARGETS.get(name)
        if target is None:
            print(f"{name}: {value:.3f}")
            continue
        met = value >= target if name.startswith("batch64") else value <= target
        print(f"{name}: {value:.3f} (target {'>=' if name.startswith('batch64') else '<='} {target}): "
              f"{'met' if met else 'NOT MET'}")


def table(results: list[Named]) -> str:
    return format_table(["engine", "batch", "p50 ms", "p90 ms", "img/s", "peak RSS MB"], [
        (name, row.config.batch_size, f"{row.stats.p50_ms:.3f}", f"{row.stats.p90_ms:.3f}",
         f"{row.stats.images_per_second:.0f}", f"{row.result.peak_rss_mb:.0f}") for name, row in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for every row (default: all)")
    parser.add_argument("--iters", type=int, default=300, help="timed batch-1 calls per row and pass (default 300)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-latency-") as folder:
        models = prepare(Path(folder), args.data_dir)
        names, configs = plan(models, args.iters, args.threads)
        rows = best_of_passes(configs, 2, names=[f"{n}, batch {c.batch_size}" for n, c in zip(names, configs)],
                              log=log)
    results = list(zip(names, rows))
    summary, compared = ratios(results)
    # With the OpenVINO EP in the comparison, also show where onnxruntime's own CPU kernels stand.
    with_ep = any(row.config.provider not in (None, CPU_PROVIDER) for row in rows)
    on_cpu = ratios(results, CPU_PROVIDER) if with_ep else None
    if args.json:
        report = {"results": [{"name": name, **row.to_dict()} for name, row in results], "ratios": summary,
                  "compared": compared}
        if on_cpu is not None:
            report["cpu_provider"] = {"ratios": on_cpu[0], "compared": on_cpu[1]}
        print(json.dumps(report, indent=2))
        return
    print(table(results))
    print_ratios(summary, compared)
    if on_cpu is not None:
        print("on onnxruntime's CPU execution provider alone:")
        print_ratios(*on_cpu)


if __name__ == "__main__":
    main()
