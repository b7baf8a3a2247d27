"""Static QDQ int8 quantization of an fp32 ONNX model with onnxruntime's quantizer.

Two steps, as onnxruntime recommends: ``quant_pre_process`` (shape inference and
graph optimizations such as folding BatchNorm into convolutions, so ranges are
calibrated on the graph that will actually run), then ``quantize_static`` in the
QDQ format with int8 weights, per output channel by default. Activation ranges
come from a calibration reader; they are cached per method in a JSON file, so
quantizing again with other nodes left in fp32 (the accuracy fallback) skips
calibration.

The types follow onnxruntime's CPU guidance: on x86, uint8 activations and int8
weights, with 7-bit weights (``reduce_range``) on CPUs without VNNI whose 16-bit
intermediate sums could saturate; on ARM, int8 activations and weights.
Needs the ``onnx`` package (the ``[quantize]`` extra), never torch.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from resnet_edge.export.cpu_features import CpuInt8Support
from resnet_edge.extras import require

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
PERCENTILE = 99.999  # of |activation| values, for the percentile method
ACTIVATION_TYPES = ("uint8", "int8")
# Operator types whose nodes the fallback may keep in fp32: the ones that carry weights or merge branches.
FALLBACK_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add")


@dataclass(frozen=True)
class QuantizationSettings:
    """How a model was (or is to be) quantized; recorded in the int8 model's metadata."""

    method: str = DEFAULT_METHOD
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = False
    fp32_nodes: tuple[str, ...] = ()
    format: str = "QDQ"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise ValueError(f"unknown activation type {self.activation_type!r}; expected uint8 or int8")

    def with_fp32_nodes(self, nodes: tuple[str, ...]) -> QuantizationSettings:
        return replace(self, fp32_nodes=tuple(nodes))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fp32_nodes": list(self.fp32_nodes)}


def settings_for_cpu(cpu: CpuInt8Support, method: str = DEFAULT_METHOD, per_channel: bool = True,
                     reduce_range: bool | None = None,
                     activation_type: str | None = None) -> tuple[QuantizationSettings, str | None]:
    """Settings suited to ``cpu``, and a note to show the user when the CPU forces a compromise.

    ``reduce_range`` and ``activation_type`` override the choice when given.
    """
    note = None
    if cpu.family == "arm":
        default_activation, default_reduce = "int8", False
    else:
        default_activation, default_reduce = "uint8", cpu.family == "x86" and cpu.vnni is False
        if cpu.family == "x86" and cpu.vnni is None and reduce_range is None:
            note = ("could not read this CPU's flags, so whether it has VNNI is unknown: weights use full 8 bits; "
                    "pass --reduce-range if it lacks VNNI (its 16-bit sums could saturate)")
        elif default_reduce and reduce_range is None:
            note = ("this CPU has no VNNI: weights are quantized to 7 bits (reduce_range) because its uint8×int8 "
                    "instructions sum pairs in 16 bits, which full-range weights can saturate; on a VNNI CPU "
                    "pass --full-range for full 8-bit weights")
        elif reduce_range is False and cpu.family == "x86" and cpu.vnni is False:
            note = ("--full-range on a CPU without VNNI: int8 products may saturate 16-bit sums on this machine; "
                    "the accuracy gate below measures what that costs here")
    settings = QuantizationSettings(
        method=method,
        per_channel=per_channel,
        activation_type=activation_type or default_activation,
        reduce_range=default_reduce if reduce_range is None else reduce_range,
    )
    return settings, note


def preprocess(model_path: Path, output_path: Path) -> None:
    """onnxruntime's ``quant_pre_process``: shape inference plus graph optimization, written to ``output_path``."""
    shape_inference = require("onnxruntime.quantization.shape_inference", "quantize", "int8 quantization")
    # Symbolic shape inference is for dynamic shapes inside the graph; this one has only a batch axis.
    shape_inference.quant_pre_process(str(model_path), str(output_path), skip_symbolic_shape=True)


def _has_calibration_cache(quantization: Any) -> bool:
    return "calibration_cache_path" in inspect.signature(quantization.quantize_static).parameters


def quantize_qdq(preprocessed: Path, output: Path, settings: QuantizationSettings, reader: Any,
                 cache_path: Path) -> None:
    """Write the QDQ int8 model of ``preprocessed`` to ``output``.

    ``reader`` feeds the calibration images. Where onnxruntime supports a
    calibration cache (``calibration_cache_path``), the ranges of the first call are
    kept in ``cache_path`` and later calls with the same method skip calibration;
    older onnxruntime versions calibrate again from the rewound reader.
    """
    quantization = require("onnxruntime.quantization", "quantize", "int8 quantization")
    types = {"uint8": quantization.QuantType.QUInt8, "int8": quantization.QuantType.QInt8}
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    extra_options = {"CalibPercentile": PERCENTILE} if settings.method == "percentile" else {}
    cache = {"calibration_cache_path": str(cache_path)} if _has_calibration_cache(quantization) else {}
    reader.rewind()
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(max(quiet, logging.ERROR))  # the quantizer logs per-tensor chatter at INFO/WARNING
    # Its calibrators also print() to stdout, which would corrupt the CLI's --json output.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantization.quantize_static(
                str(preprocessed),
                str(output),
                calibration_data_reader=reader,
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=types[settings.activation_type],
                weight_type=types[settings.weight_type],
                nodes_to_exclude=list(settings.fp32_nodes),
                calibrate_method=methods[settings.method],
                extra_options=extra_options,
                **cache,
            )
    finally:
        logging.getLogger().setLevel(quiet)
