"""Rank the nodes of a QDQ model by how much quantization noise each one adds.

Both models run over a few calibration batches with every intermediate tensor
exposed (onnxruntime's ``qdq_loss_debug``). For each tensor the int8 model
quantizes, the signal-to-quantization-noise ratio against the fp32 model's same
tensor gives the noise accumulated up to that point. A node's own contribution
is the noise power at its output minus the largest at its inputs, so a late
layer is not blamed for noise that earlier layers made. The accuracy fallback
keeps the highest-ranked nodes in fp32 first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_edge.extras import require

# Ops that pass quantization noise through unchanged in kind: follow them to the tensor that gets quantized.
_PASS_THROUGH = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape", "GlobalAveragePool")


@dataclass(frozen=True)
class NodeSensitivity:
    name: str
    op_type: str
    output_sqnr_db: float
    noise_added: float  # noise-to-signal power ratio at the output minus the worst at the inputs


def _noise_power(sqnr_db: float) -> float:
    return 10.0 ** (-sqnr_db / 10.0)


def rank_nodes(float_model: Path, qdq_model: Path, reader: Any, workdir: Path,
               op_types: Iterable[str]) -> list[NodeSensitivity]:
    """Nodes of ``float_model`` of the given ``op_types``, most sensitive first.

    ``reader`` is a calibration reader (rewound before each pass); a few batches suffice.
    """
    onnx = require("onnx", "quantize", "ranking nodes by quantization sensitivity")
    debug = require("onnxruntime.quantization.qdq_loss_debug", "quantize", "ranking nodes by quantization sensitivity")
    augmented = {}
    for kind, path in (("float", float_model), ("qdq", qdq_model)):
        augmented[kind] = workdir / f"{kind}.debug.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented[kind]))
    reader.rewind()
    float_acts = debug.collect_activations(str(augmented["float"]), reader)
    reader.rewind()
    qdq_acts = debug.collect_activations(str(augmented["qdq"]), reader)
    reader.rewind()
    matching = debug.create_activation_matching(qdq_acts, float_acts)
    sqnr = {
        name: debug.compute_signal_to_quantization_noice_ratio(match["float"], match["post_qdq"])
        for name, match in matching.items()
        if match.get("float") is not None and match.get("post_qdq") is not None
    }

    graph = onnx.load(str(float_model)).graph
    initializers = {init.name for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def observed(tensor: str) -> float | None:
        """SQNR of ``tensor``, or of the tensor it flows into unchanged when it is not quantized itself."""
        for _ in range(4):
            if tensor in sqnr:
                return sqnr[tensor]
            after = consumers.get(tensor, [])
            if len(after) != 1 or after[0].op_type not in _PASS_THROUGH:
                return None
            tensor = after[0].output[0]
        return None

    wanted = set(op_types)
    ranked = []
    for node in graph.node:
        if node.op_type not in wanted:
            continue
        out = observed(node.output[0])
        if out is None:
            continue
        inputs = [observed(name) for name in node.input if name and name not in initializers]
        worst_in = max((_noise_power(value) for value in inputs if value is not None), default=0.0)
        ranked.append(NodeSensitivity(node.name, node.op_type, out, _noise_power(out) - worst_in))
    ranked.sort(key=lambda entry: entry.noise_added, reverse=True)
    return ranked
