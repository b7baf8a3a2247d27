"""Adopt an ONNX file exported elsewhere: make it a first-class resnet-edge model without re-exporting it.

A classifier someone else exported (``torch.onnx.export``, tf2onnx, a model zoo)
already is the model; re-tracing it would need its code and torch. Adoption
keeps its graph and weights and changes only what the rest of the toolkit relies
on: one input ``input`` (float32 ``(batch, 3, 32, 32)`` normalized, or uint8
``(batch, 32, 32, 3)`` pixels) and one output ``logits`` ``(batch, classes)``, a
dynamic batch axis (a fixed batch is made dynamic where its Reshapes allow), an
opset in ``MIN_OPSET..MAX_OPSET``, optionally the ``--raw-input`` preprocessing in
front, and the resnet-edge metadata. The result then passes the same gates as
our own exports (``export.gates``), with the file *as given*, run by
onnxruntime, as the parity reference. numpy, onnx and onnxruntime only: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from resnet_edge import __version__
from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE
from resnet_edge.errors import ExportError, first_line
from resnet_edge.export.deployment import Deployment
from resnet_edge.export.gates import ExportResult, write_checked
from resnet_edge.export.parity import Reference
from resnet_edge.files import file_sha256
from resnet_edge.metadata import (BATCH_AXIS_NAME, INPUT_LAYOUT, INPUT_NAME, MAX_OPSET, MIN_OPSET, OUTPUT_NAME,
                                  RAW_INPUT_LAYOUT, ModelMetadata)
from resnet_edge.normalization import affine, normalize
from resnet_edge.runtime.session import DEFAULT_PROVIDERS

_TORCH_MAGICS = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; a legacy pickle (protocol byte)
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}
_SHAPES = {TensorProto.FLOAT: (INPUT_LAYOUT, (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)),
           TensorProto.UINT8: (RAW_INPUT_LAYOUT, (IMAGE_SIZE, IMAGE_SIZE, CHANNELS))}
_EXPECTED_INPUT = (f"float32 (N, {CHANNELS}, {IMAGE_SIZE}, {IMAGE_SIZE}) normalized "
                   f"or uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}, {CHANNELS}) pixels")
_PROBE_BATCHES = (1, 7)


def is_onnx_file(path: Path) -> bool:
    """Whether ``path`` holds an ONNX model, judged by content (a renamed file is what it contains)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
        if not head or head.startswith(_TORCH_MAGICS):
            return False  # cheap: a PyTorch file is never parsed as protobuf
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # unreadable, or not protobuf at all: not ONNX
        return False


def adopt_onnx(source: str | Path, output: str | Path, *, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, class_names: Sequence[str] | None = None,
               raw_input: bool = False, opset: int | None = None, accuracy_check: bool = True) -> ExportResult:
    """Write ``source`` (a foreign ONNX classifier) to ``output`` as a resnet-edge model, after every check passes.

    ``mean``/``std``/``class_names`` default to CIFAR-10's; ``opset`` None keeps the file's when supported;
    ``raw_input`` puts uint8 NHWC → normalized NCHW in front of a float32 model. Raises :class:`ExportError`
    (and writes nothing) when the file does not fit or a check fails.
    """
    source, output = Path(source), Path(output)
    model = _load(source)
    graph_input, graph_output = _interface(model.graph, source.name)
    layout, batch = _input_layout(graph_input, source.name)
    classes = _class_count(graph_output, source.name)
    if raw_input and layout == RAW_INPUT_LAYOUT:
        raise ExportError(f"{source.name} already takes uint8 pixels ({_describe(graph_input)}); adopt it without "
                          "--raw-input")
    deployment = Deployment.resolve(classes, mean=mean, std=std, class_names=class_names)
    reference = _reference(source, graph_input.name, graph_output.name, batch)
    if raw_input:
        reference = _fed_pixels(reference, deployment)

    model, opset_used = _with_opset(model, opset, source.name)
    graph = model.graph
    if model.ir_version >= 4:  # weights listed as inputs stop onnxruntime from folding them, and it says so
        _drop_weights_from_inputs(graph)
    _rename(graph, graph_input.name, INPUT_NAME)
    _rename(graph, graph_output.name, OUTPUT_NAME)
    if batch is not None:
        _free_fixed_batch(graph, batch)
    for value in (*graph.input, *graph.output):  # the batch axis is named as in our own exports
        if value.name in (INPUT_NAME, OUTPUT_NAME):
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS_NAME
    if raw_input:
        _prepend_pixels(graph, deployment.mean, deployment.std)
        layout = RAW_INPUT_LAYOUT
    onnx_bytes = model.SerializeToString()
    _probe(onnx_bytes, layout, batch, source.name)

    metadata = ModelMetadata(
        class_names=deployment.class_names, mean=deployment.mean, std=deployment.std, image_size=IMAGE_SIZE,
        precision="int8" if _is_quantized(graph) else "fp32", input_layout=layout,
        checkpoint_sha256=file_sha256(source), toolkit_version=__version__,
        provenance={"format": "onnx", **deployment.provenance()},
    )
    return write_checked(onnx_bytes, metadata, reference, output, opset_used, accuracy_check=accuracy_check,
                         checked_against=f"{source.name} as given")


def _load(source: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise ExportError(f"cannot read {source} as ONNX: {first_line(exc)}; expected an .onnx model file") from None
    ours = [prop.key for prop in model.metadata_props if prop.key.startswith("resnet_edge.")]
    if ours:
        raise ExportError(f"{source.name} is already a resnet-edge model (it has {ours[0]!r}); use it as it is")
    if not model.graph.node:
        raise ExportError(f"cannot read {source} as ONNX: its graph has no nodes; expected an .onnx model file")
    return model


def _interface(graph: onnx.GraphProto, name: str) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    """The one image input (initializers listed as inputs are weights, not inputs) and the one output."""
    weights = {tensor.name for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    for kind, values, expected in (("input", inputs, "one image input"),
                                   ("output", graph.output, "one logits output")):
        if len(values) != 1:
            listed = ", ".join(repr(value.name) for value in values)
            raise ExportError(f"{name} has {len(values)} {kind}s ({listed}); expected {expected}")
    return inputs[0], graph.output[0]


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """Fixed dims as ints, symbolic or unset ones as their name or ``"?"``; None when the shape is unknown."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def _describe(value: onnx.ValueInfoProto) -> str:
    """``'x' float32 (1, 3, 224, 224)``."""
    elem = value.type.tensor_type.elem_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name if elem else "undefined"
    dims = _dims(value)
    return f"'{value.name}' {dtype} " + ("of unknown shape" if dims is None else f"({', '.join(map(str, dims))})")


def _input_layout(value: onnx.ValueInfoProto, name: str) -> tuple[str, int | None]:
    """The input's layout and its fixed batch (None when dynamic)."""
    layout, image_dims = _SHAPES.get(value.type.tensor_type.elem_type, (None, None))
    dims = _dims(value)
    if layout is None or dims is None or len(dims) != 4 or tuple(dims[1:]) != image_dims:
        raise ExportError(f"{name}: input {_describe(value)}; expected {_EXPECTED_INPUT}")
    return layout, dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None


def _class_count(value: onnx.ValueInfoProto, name: str) -> int:
    dims = _dims(value)
    if (value.type.tensor_type.elem_type != TensorProto.FLOAT or dims is None or len(dims) != 2
            or not isinstance(dims[1], int) or dims[1] < 1):
        raise ExportError(f"{name}: output {_describe(value)}; expected float32 (N, classes) logits")
    return dims[1]


def _reference(source: Path, input_name: str, output_name: str, batch: int | None) -> Reference:
    """The file as given, run by onnxruntime; a fixed batch b runs in groups of b, the last padded with zeros."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the file's own quirks (weights listed as inputs, ...) are not the user's news
    try:
        session = ort.InferenceSession(str(source), options, providers=list(DEFAULT_PROVIDERS))
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot run {source.name} as given: {first_line(exc)}") from None

    def run(inputs: np.ndarray) -> np.ndarray:
        if batch is None:
            return session.run([output_name], {input_name: inputs})[0]
        padded = np.concatenate([inputs, np.zeros((-len(inputs) % batch, *inputs.shape[1:]), inputs.dtype)])
        groups = [session.run([output_name], {input_name: padded[i:i + batch]})[0]
                  for i in range(0, len(padded), batch)]
        return np.concatenate(groups)[:len(inputs)]

    return run


def _fed_pixels(as_given: Reference, deployment: Deployment) -> Reference:
    """The reference of a ``--raw-input`` adoption: pixels normalized here, as the new graph does inside."""
    return lambda pixels: as_given(normalize(pixels, deployment.mean, deployment.std))


def _with_opset(model: onnx.ModelProto, opset: int | None, name: str) -> tuple[onnx.ModelProto, int]:
    """Keep the file's opset when supported (and not overridden); else convert to the nearest supported one."""
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; expected {MIN_OPSET}..{MAX_OPSET}")
    found = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if found is None:
        raise ExportError(f"{name} imports no default-domain ONNX opset; expected one in {MIN_OPSET}..{MAX_OPSET}")
    target = opset if opset is not None else min(max(found, MIN_OPSET), MAX_OPSET)
    if target == found:
        return model, found
    try:
        return onnx.version_converter.convert_version(model, target), target
    except Exception as exc:
        raise ExportError(f"cannot convert {name} from opset {found} to opset {target}: {first_line(exc)}") from None


def _names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name in ``graph`` (a classifier has no If/Loop subgraphs; the checker refuses a missed one)."""
    names = {value.name for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}
    for node in graph.node:
        names.update((*node.input, *node.output))
    return names


def _unique(graph: onnx.GraphProto, stem: str) -> str:
    taken, suffix = _names(graph), 0
    while f"{stem}_{suffix}" in taken:
        suffix += 1
    return f"{stem}_{suffix}"


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere; a tensor already called ``new`` moves aside first."""
    if old == new:
        return
    if new in _names(graph):
        _rename(graph, new, _unique(graph, new))
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if value.name == old:
            value.name = new
    for node in graph.node:
        for names in (node.input, node.output):
            names[:] = [new if item == old else item for item in names]


def _free_fixed_batch(graph: onnx.GraphProto, batch: int) -> None:
    """Make a graph traced at batch ``batch`` run at any batch.

    The traced intermediate shapes (value_info) are dropped, and every Reshape of a batch-carrying tensor
    whose constant target shape starts with ``batch`` gets 0 there instead ("copy the input's dim 0").
    """
    del graph.value_info[:]
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in (node for node in graph.node if node.op_type == "Constant"):
        for attr in node.attribute:
            if attr.name in ("value", "value_ints"):
                constants[node.output[0]] = numpy_helper.to_array(attr.t) if attr.name == "value" else \
                    np.array(attr.ints, np.int64)
    carries_batch = {INPUT_NAME}  # nodes are topologically sorted, so one pass finds every descendant
    for node in graph.node:
        if not carries_batch.isdisjoint(node.input):
            carries_batch.update(node.output)
        allow_zero = any(attr.name == "allowzero" and attr.i for attr in node.attribute)
        if node.op_type != "Reshape" or node.input[0] not in carries_batch or allow_zero:
            continue
        shape = constants.get(node.input[1])
        if shape is not None and shape.ndim == 1 and len(shape) and shape[0] == batch:
            # A new initializer per Reshape: the old one may be shared with a Reshape that must keep it.
            fixed = numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(shape.dtype),
                                            _unique(graph, f"{node.input[1]}_any_batch"))
            graph.initializer.append(fixed)
            node.input[1] = fixed.name
    _drop_unused_constants(graph)  # the replaced shapes: onnxruntime warns of unused ones at every start


def _drop_weights_from_inputs(graph: onnx.GraphProto) -> None:
    weights = {tensor.name for tensor in graph.initializer}
    kept = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)


def _drop_unused_constants(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {v.name for v in (*graph.input, *graph.output)}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)


def _prepend_pixels(graph: onnx.GraphProto, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Feed the float32 input from uint8 NHWC pixels: Transpose, Cast, ``x * scale + shift`` (as ``RawPixels``)."""
    normalized = _unique(graph, "normalized")
    _rename(graph, INPUT_NAME, normalized)
    scale, shift = affine(mean, std)
    nchw, floats, scaled = (_unique(graph, f"pixels_{stem}") for stem in ("nchw", "float", "scaled"))
    names = {"scale": _unique(graph, "pixel_scale"), "shift": _unique(graph, "pixel_shift")}
    graph.initializer.extend([numpy_helper.from_array(scale[None].copy(), names["scale"]),
                              numpy_helper.from_array(shift[None].copy(), names["shift"])])
    nodes = [helper.make_node("Transpose", [INPUT_NAME], [nchw], perm=[0, 3, 1, 2]),
             helper.make_node("Cast", [nchw], [floats], to=TensorProto.FLOAT),
             helper.make_node("Mul", [floats, names["scale"]], [scaled]),
             helper.make_node("Add", [scaled, names["shift"]], [normalized])]
    for node, stem in zip(nodes, ("transpose", "cast", "mul", "add")):
        node.name = f"resnet_edge_pixels_{stem}"
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)  # ahead of everything, keeping the nodes topologically sorted
    pixels = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8,
                                           [BATCH_AXIS_NAME, IMAGE_SIZE, IMAGE_SIZE, CHANNELS])
    next(value for value in graph.input if value.name == normalized).CopyFrom(pixels)


def _probe(onnx_bytes: bytes, layout: str, batch: int | None, name: str) -> None:
    """Run the adopted graph at several batch sizes, so a batch it cannot take is refused in one line."""
    shape = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS) if layout == RAW_INPUT_LAYOUT else (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    dtype = np.uint8 if layout == RAW_INPUT_LAYOUT else np.float32
    try:
        session = ort.InferenceSession(onnx_bytes, providers=list(DEFAULT_PROVIDERS))
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load {name} once adopted: {first_line(exc)}") from None
    for size in _PROBE_BATCHES:
        try:
            session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((size, *shape), dtype)})
        except Exception as exc:
            problem = (f"has a fixed batch of {batch} that could not be made dynamic" if batch is not None
                       else f"declares a dynamic batch but does not run at batch {size}")
            raise ExportError(f"{name} {problem}: {first_line(exc)}") from None


def _is_quantized(graph: onnx.GraphProto) -> bool:
    return any(node.op_type in _INT8_OPS or node.op_type.startswith("QLinear") for node in graph.node)

