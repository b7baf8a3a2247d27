"""Which of our int8 convolutions take onnxruntime's batch-parallel symmetric QLinearConv path, and what the rest cost.

onnxruntime's CPU QLinearConv (``qlinearconv.cc``) runs a whole batch as one
parallel job only when ``is_symmetric_conv_ && channels_last_``; otherwise it loops
image by image. ``channels_last_`` comes from the NHWC transformer (optimization
level "all", which the Predictor uses). ``is_symmetric_conv_`` needs, at prepack
time: uint8 (or int8) activations with a constant scalar zero point, int8 weights
whose zero points are constant and all 0, and MLAS's indirect-conv kernel accepting
the shape (``MlasConvSymPackWSize``): on AVX-512 (VNNI or not), input channels a
multiple of 4 and output channels at least 16 and a multiple of 4, which this script
checks (AVX2 machines need output channels a multiple of 8).

This script checks those conditions for every QLinearConv of the optimized int8
graph of the reference (and, when shipped, the pruned reference), prints each node's
share of a batch-64 profile, and measures the one convolution that fails them, the
3-channel stem, built both ways as a one-conv model (3 input channels as exported,
and zero-padded to 4), so the table shows what taking the path would buy.

    python benchmarks/qlinearconv_paths.py [--iters 200]

About a minute on 2 cores; uses the built-in sample only.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.cli.table import format_table
from resnet_edge.data import load_sample
from resnet_edge.export import export_onnx
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.reference import PRUNED_REFERENCE, reference_checkpoint
from resnet_edge.runtime.session import usable_cores


def session(path: Path, profile: bool = False, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = usable_cores()
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(path.with_suffix(""))
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def conditions(graph: onnx.GraphProto, node: onnx.NodeProto) -> tuple[str, int, int, bool]:
    """Whether ``node`` meets the symmetric path's conditions (and which one fails), with its channel counts."""
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    x_zero, weights, w_zero = node.input[2], node.input[3], node.input[5]
    channels_last = any(a.name == "channels_last" and a.i == 1 for a in node.attribute)
    if weights not in constants:
        return "weights not constant", 0, 0, channels_last
    w = constants[weights]
    out_channels, in_channels = int(w.shape[0]), int(w.shape[1])
    if w.dtype != np.int8:
        return f"weights {w.dtype}, not int8", in_channels, out_channels, channels_last
    if x_zero not in constants or constants[x_zero].size != 1:
        return "activation zero point not a constant scalar", in_channels, out_channels, channels_last
    if w_zero not in constants or np.any(constants[w_zero] != 0):
        return "weight zero points not all 0", in_channels, out_channels, channels_last
    if in_channels % 4:
        return f"{in_channels} input channels, not a multiple of 4", in_channels, out_channels, channels_last
    if out_channels < 16 or out_channels % 4:
        return f"{out_channels} output channels (needs >= 16, multiple of 4)", in_channels, out_channels, channels_last
    return "yes" if channels_last else "no NHWC (channels_last unset)", in_channels, out_channels, channels_last


def kernel_events(path: Path, batch: int, iters: int) -> list[dict]:
    """onnxruntime's per-node kernel-time events over ``iters`` calls at ``batch``, in call order."""
    runner = session(path, profile=True)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32), dtype=np.float32)
    for _ in range(iters):
        runner.run(None, {"input": x})
    events = json.loads(Path(runner.end_profiling()).read_text())
    return [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def profile(path: Path, batch: int, iters: int) -> dict[str, float]:
    """Each node's share of the kernel time over ``iters`` calls at ``batch``."""
    totals: dict[str, float] = collections.defaultdict(float)
    for event in kernel_events(path, batch, iters):
        totals[event["name"].removesuffix("_kernel_time")] += event["dur"]
    whole = sum(totals.values())
    return {name: value / whole for name, value in totals.items()}


def audit(name: str, int8: Path, work: Path, iters: int) -> None:
    optimized = work / f"{name}.optimized.onnx"
    session(int8, optimized=optimized)
    graph = onnx.load(str(optimized)).graph
    shares = profile(int8, 64, max(5, iters // 20))
    rows = []
    for node in graph.node:
        if node.op_type == "QLinearConv":
            verdict, cin, cout, _ = conditions(graph, node)
            rows.append((node.name.split("_token")[0], cin, cout, verdict, f"{100 * shares.get(node.name, 0):.1f} %"))
    taken = sum(1 for row in rows if row[3] == "yes")
    print(f"\n{name}: {taken} of {len(rows)} QLinearConv nodes meet the symmetric batch-parallel conditions")
    print(format_table(["conv", "in", "out", "symmetric batch-parallel path", "batch-64 time"], rows))


def stem_model(path: Path, in_channels: int, out_channels: int, rng: np.random.Generator) -> None:
    """A one-conv model as our stem is: 3×3, stride 1, pad 1, on 32×32; extra input channels get zero weights."""
    weights = np.zeros((out_channels, in_channels, 3, 3), np.float32)
    weights[:, :3] = rng.standard_normal((out_channels, 3, 3, 3)).astype(np.float32) * 0.2
    nodes = []
    source = "input"
    if in_channels > 3:  # zero-pad the image's channels inside the graph
        pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, in_channels - 3, 0, 0], np.int64), "pads")
        nodes.append(helper.make_node("Pad", ["input", "pads"], ["padded"]))
        source = "padded"
    nodes += [helper.make_node("Conv", [source, "w", "b"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
              helper.make_node("Relu", ["conv"], ["logits"])]
    initializers = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.zeros(out_channels, np.float32), "b")]
    if in_channels > 3:
        initializers.append(pads)
    graph = helper.make_graph(nodes, "stem", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                           ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


def quantize_plain(fp32: Path, int8: Path) -> None:
    """The same QDQ settings as ``resnet-edge quantize`` (uint8 activations, int8 symmetric per-channel weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.batches = iter([{"input": rng.standard_normal((8, 3, 32, 32), dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process a one-node graph
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def conv_us_per_image(path: Path, batch: int, iters: int) -> float:
    """Median time of the QLinearConv kernel alone per image, from onnxruntime's profile (Q/DQ left out)."""
    times = [e["dur"] for e in kernel_events(path, batch, iters) if e.get("args", {}).get("op_name") == "QLinearConv"]
    return float(np.median(times[len(times) // 10:])) / batch  # the first calls warm up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=200, help="timed calls at batch 1 (batch 64: a tenth)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resnet-edge-qlinearconv-") as folder:
        work = Path(folder)
        reader = CifarCalibrationReader.from_training_split(load_sample("train"))
        names = {"reference": reference_checkpoint()}
        try:
            names["pruned reference"] = reference_checkpoint(PRUNED_REFERENCE)
        except ResnetEdgeError:  # an installation without the pruned reference audits the reference alone
            pass
        for name, checkpoint in names.items():
            fp32, int8 = work / f"{name}.onnx", work / f"{name}.int8.onnx"
            export_onnx(checkpoint, fp32)
            quantize_onnx(fp32, int8, reader, load_sample("val"), log=lambda line: None)
            audit(name, int8, work, args.iters)

        rng = np.random.default_rng(0)
        rows = []
        for out_channels in (64, 40):  # the reference's stem and the pruned reference's
            timings = {}
            for in_channels in (3, 4):
                fp32, int8 = work / f"stem{in_channels}_{out_channels}.onnx", work / f"stem{in_channels}_{out_channels}.int8.onnx"
                stem_model(fp32, in_channels, out_channels, rng)
                quantize_plain(fp32, int8)
                timings[in_channels] = [conv_us_per_image(int8, batch, args.iters if batch == 1
                                                          else max(10, args.iters // 10)) for batch in (1, 64)]
            for in_channels, (one, many) in timings.items():
                rows.append((f"3x3 stem → {out_channels}", in_channels, f"{one:.1f}", f"{many:.2f}",
                             f"{timings[3][0] / one:.2f}x", f"{timings[3][1] / many:.2f}x"))
        print("\none-conv stem, int8 QLinearConv kernel time in µs per image (median over calls), as exported "
              "(3 input channels) and zero-padded to 4:")
        print(format_table(["model", "input channels", "batch 1", "batch 64", "speed-up b1", "speed-up b64"], rows))


if __name__ == "__main__":
    main()
