"""Where onnxruntime's CPU kernels lose time to OpenVINO on an int8 model: per-stage kernel time, side by side.

``runtime_latency.py`` measures the whole gap (onnxruntime's CPU provider about
1.24–1.35× OpenVINO's int8 latency at batch 1, 0.84–0.85× its throughput at batch 64);
this script says where it sits. Both engines run the same QDQ file in this one
process, one after the other, with all cores: onnxruntime with per-node
profiling (``enable_profiling``), OpenVINO with its per-layer performance
counters (``PERF_COUNT``). Each node's median over the timed calls is summed
per stage: the stem convolution, each of the four residual stages (its
convolutions and its residual Adds, which onnxruntime runs as separate
``QLinearAdd`` nodes and OpenVINO fuses into the convolutions), and the rest
(quantize, layout reorders, pooling, the classifier).

    python benchmarks/int8_layers.py MODEL.int8.onnx [--batch-size 1,64] [--iters 1000] [--json]

MODEL is an int8 file from ``resnet-edge quantize``. Needs the ``[openvino]``
extra. Profiling adds a little to onnxruntime's per-node times (its sum at
batch 1 reads about 0.91 ms against 0.79 ms unprofiled), so read the ratios
per stage, not the totals. About 10 seconds on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from resnet_edge.cli.table import format_table
from resnet_edge.extras import require
from resnet_edge.metadata import INPUT_NAME
from resnet_edge.runtime.session import CPU_PROVIDER, read_metadata

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "other")


def stage_of(node_name: str) -> str:
    """The stage a node belongs to, from the module path both engines keep in node names (``/layer3/...``)."""
    match = re.match(r"/(conv1|layer[1-4])/", node_name)
    if match is None:
        return "other"
    return "stem" if match.group(1) == "conv1" else match.group(1)


def by_stage(node_times: dict[str, list[float]]) -> dict[str, float]:
    """Microseconds per stage: the sum of each node's median time."""
    stages = dict.fromkeys(STAGES, 0.0)
    for name, times in node_times.items():
        stages[stage_of(name)] += float(np.median(times))
    return stages


def onnxruntime_stages(model: Path, batch: np.ndarray, iters: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="resnet-edge-profile-") as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(str(model), options, providers=[CPU_PROVIDER])
        for _ in range(iters):
            session.run(None, {INPUT_NAME: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["name"].removesuffix("_kernel_time")].append(event["dur"])
    return by_stage(times)


def openvino_stages(model: Path, batch: np.ndarray, iters: int) -> dict[str, float]:
    ov = require("openvino", "openvino", "Comparing with OpenVINO")
    core = ov.Core()
    network = core.read_model(str(model))
    network.reshape({network.input(0).get_any_name(): list(batch.shape)})
    request = core.compile_model(network, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True}
                                 ).create_infer_request()
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(iters):
        request.infer({0: batch})
        for layer in request.profiling_info:
            times[layer.node_name].append(layer.real_time.total_seconds() * 1e6)
    return by_stage(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an int8 ONNX file from resnet-edge quantize")
    parser.add_argument("--batch-size", default="1,64", help="comma list (default 1,64)")
    parser.add_argument("--iters", type=int, default=1000,
                        help="timed batch-1 calls per engine, fewer for bigger batches (default 1000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    metadata = read_metadata(args.model)
    if metadata.precision != "int8":
        parser.error(f"{args.model} is an {metadata.precision} model; give an int8 file from resnet-edge quantize")
    size = metadata.image_size
    report = {}
    for batch_size in (int(b) for b in args.batch_size.split(",")):
        rng = np.random.default_rng(0)
        if metadata.raw_input:
            batch = rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
        else:
            batch = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
        iters = max(10, args.iters // batch_size)
        ours = onnxruntime_stages(args.model, batch, iters)  # first, and gone before OpenVINO starts its threads
        theirs = openvino_stages(args.model, batch, iters)
        report[batch_size] = {stage: {"onnxruntime_us": ours[stage], "openvino_us": theirs[stage]} for stage in STAGES}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for batch_size, stages in report.items():
        print(f"batch {batch_size}: kernel time per call, sum of per-node medians (µs)")
        total = {key: sum(s[key] for s in stages.values()) for key in ("onnxruntime_us", "openvino_us")}
        cells = []
        for stage, row in {**stages, "total": total}.items():
            ratio = row["onnxruntime_us"] / row["openvino_us"] if row["openvino_us"] else float("nan")
            cells.append((stage, f"{row['onnxruntime_us']:.0f}", f"{row['openvino_us']:.0f}", f"{ratio:.2f}"))
        print(format_table(["stage", "onnxruntime", "OpenVINO", "ratio"], cells))


if __name__ == "__main__":
    main()
