"""fp32 ONNX → int8 ONNX that is never written without measuring what it lost.

    result = quantize_onnx("model.onnx", "model.int8.onnx", reader, load_split("val"), max_drop=0.5)

Steps: pre-process and quantize (``resnet_edge.export.qdq``: static QDQ,
per-channel int8 weights, types chosen for this CPU), then the accuracy gate:
fp32 and int8 top-1 on the evaluation split, their agreement and per-class
deltas. If int8 loses more than ``max_drop`` points the output is not written
and :class:`AccuracyGateError` says by how much, unless ``fallback`` is set:
then nodes are ranked by the quantization noise they add
(``resnet_edge.export.sensitivity``) and kept in fp32 one at a time, most
sensitive first, until the drop is within the limit. The written model carries
every metadata entry of the fp32 model plus the quantization settings, the
calibration set's description and the measured accuracies; the write is atomic.
Needs onnx and onnxruntime (the ``[quantize]`` extra), never torch.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_edge.data import Split
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.export.accuracy_gate import AccuracyComparison, compare, onnx_logits
from resnet_edge.export.cpu_features import CpuInt8Support, cpu_int8_support
from resnet_edge.export.qdq import (
    DEFAULT_METHOD,
    FALLBACK_OP_TYPES,
    QuantizationSettings,
    preprocess,
    quantize_qdq,
    settings_for_cpu,
)
from resnet_edge.export.onnx_metadata import with_props_checked
from resnet_edge.export.sensitivity import NodeSensitivity, rank_nodes
from resnet_edge.extras import require
from resnet_edge.files import atomic_write_bytes
from resnet_edge.metadata import (
    KEY_CALIBRATION,
    KEY_INT8_ACCURACY,
    KEY_PRECISION,
    KEY_QUANTIZATION,
    ModelMetadata,
)
from resnet_edge.runtime.bench import measure_latency
from resnet_edge.runtime.predictor import Predictor
from resnet_edge.runtime.session import read_metadata_props

if TYPE_CHECKING:
    from resnet_edge.calibration import CalibrationReader

DEFAULT_MAX_DROP = 0.5
SENSITIVITY_IMAGES = 64  # calibration images run through both models to rank nodes


class AccuracyGateError(ResnetEdgeError):
    """int8 lost more accuracy than allowed; nothing was written."""


@dataclass(frozen=True)
class FallbackStep:
    """One more node kept in fp32, and what the model measured afterwards."""

    node: str
    op_type: str
    drop: float
    agreement: float


@dataclass
class QuantizationResult:
    output: Path
    settings: QuantizationSettings
    cpu: str
    calibration: str
    comparison: AccuracyComparison  # of the written model
    first_comparison: AccuracyComparison  # of the fully quantized model, before any fallback
    fp32_bytes: int
    int8_bytes: int
    seconds: float  # pre-processing, calibration and quantization (the gate not included)
    notes: list[str] = field(default_factory=list)
    fallback: list[FallbackStep] = field(default_factory=list)
    fallback_cost: dict[str, float] | None = None  # latency and size of the written model vs all-int8

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "settings": self.settings.to_dict(),
            "cpu": self.cpu,
            "calibration": self.calibration,
            "accuracy": self.comparison.to_dict(),
            "accuracy_before_fallback": self.first_comparison.to_dict() if self.fallback else None,
            "fp32_bytes": self.fp32_bytes,
            "int8_bytes": self.int8_bytes,
            "size_ratio": self.int8_bytes / self.fp32_bytes,
            "quantization_seconds": self.seconds,
            "notes": self.notes,
            "fallback": [step.__dict__ for step in self.fallback],
            "fallback_cost": self.fallback_cost,
        }


def _with_metadata(model_path: Path, props: dict[str, str]) -> bytes:
    """The model at ``model_path`` with exactly ``props`` as metadata, after the full ONNX checker."""
    onnx = require("onnx", "quantize", "int8 quantization")
    proto = onnx.load(str(model_path))
    del proto.metadata_props[:]
    return with_props_checked(proto, props, ResnetEdgeError, "the int8 model")


def _batch1_p50_ms(model_path: Path) -> float:
    return measure_latency(Predictor(model_path), batch_size=1, warmup=20, iters=200).p50_ms


@dataclass(frozen=True)
class _Work:
    """The files of one quantization, in a temporary folder."""

    folder: Path

    @property
    def preprocessed(self) -> Path:
        return self.folder / "preprocessed.onnx"

    @property
    def candidate(self) -> Path:
        return self.folder / "int8.onnx"

    @property
    def all_int8(self) -> Path:  # the fully quantized model, kept while the fallback tries others
        return self.folder / "all-int8.onnx"

    @property
    def ranges(self) -> Path:  # the calibration cache
        return self.folder / "ranges.json"


class _Gate:
    """fp32 and int8 accuracy on the evaluation split; the fp32 logits are computed once."""

    def __init__(self, fp32_model: Path, split: Split, class_names: tuple[str, ...]) -> None:
        self.split, self.class_names = split, class_names
        self.fp32_logits = onnx_logits(fp32_model, split)

    def measure(self, int8_model: Path) -> AccuracyComparison:
        return compare(self.fp32_logits, onnx_logits(int8_model, self.split), self.split, self.class_names)


def quantize_onnx(
    model: str | Path,
    output: str | Path,
    reader: CalibrationReader,
    eval_split: Split,
    *,
    method: str | None = None,
    per_channel: bool = True,
    reduce_range: bool | None = None,
    activation_type: str | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    fallback: bool = False,
    cpu: CpuInt8Support | None = None,
    log: Callable[[str], None] = print,
) -> QuantizationResult:
    """Quantize the fp32 ``model`` to ``output`` if int8 loses at most ``max_drop`` top-1 points on ``eval_split``.

    ``reader`` feeds the calibration batches as the model takes them (``reader.raw_pixels`` must
    match a ``--raw-input`` model); its ``description`` goes into the metadata. Raises
    :class:`AccuracyGateError`, writing nothing, when the drop stays above ``max_drop`` (after
    the fallback, when enabled).
    """
    model, output = Path(model), Path(output)
    props, metadata = _check_inputs(model, output, reader, max_drop)
    cpu = cpu or cpu_int8_support()
    settings, note = settings_for_cpu(cpu, method or DEFAULT_METHOD, per_channel, reduce_range, activation_type)
    notes = [note] if note else []
    for line in notes:
        log(f"note: {line}")
    with tempfile.TemporaryDirectory(prefix="resnet-edge-quantize-") as tmp:
        work = _Work(Path(tmp))
        log(f"calibrating ({settings.method}) on {reader.description}; CPU: {cpu.describe()}")
        started = time.perf_counter()
        preprocess(model, work.preprocessed)
        quantize_qdq(work.preprocessed, work.candidate, settings, reader, work.ranges)
        seconds = time.perf_counter() - started
        log(f"quantized in {seconds:.1f} s; evaluating fp32 and int8 on {len(eval_split)} {eval_split.name} "
            f"images ({eval_split.source})")
        gate = _Gate(model, eval_split, metadata.class_names)
        first = comparison = gate.measure(work.candidate)
        log(f"int8: {first.summary()}")
        steps: list[FallbackStep] = []
        if comparison.drop > max_drop and fallback:
            settings, comparison, steps = _fall_back(work, settings, reader, gate, comparison, max_drop, log)
        if comparison.drop > max_drop:
            raise _gate_error(comparison, steps, max_drop, fallback, output)
        fallback_cost = _fallback_cost(work) if steps else None
        data = _with_metadata(work.candidate, _int8_props(props, settings, cpu, reader, comparison))
    atomic_write_bytes(output, data)
    return QuantizationResult(
        output=output, settings=settings, cpu=cpu.describe(), calibration=reader.description,
        comparison=comparison, first_comparison=first, fp32_bytes=model.stat().st_size, int8_bytes=len(data),
        seconds=seconds, notes=notes, fallback=steps, fallback_cost=fallback_cost,
    )


def _check_inputs(model: Path, output: Path, reader: CalibrationReader,
                  max_drop: float) -> tuple[dict[str, str], ModelMetadata]:
    """The fp32 model's metadata props and their parsed form, after refusing what cannot give a good int8 model."""
    if not model.is_file():
        raise ResnetEdgeError(f"model not found: {model}")
    if max_drop < 0:
        raise ResnetEdgeError(f"--max-drop must be at least 0 points, got {max_drop}")
    props = read_metadata_props(model)
    metadata = ModelMetadata.from_props(props, str(model))
    if metadata.precision != "fp32":
        raise ResnetEdgeError(f"{model} is already {metadata.precision}; quantize the fp32 model it came from")
    if output.resolve() == model.resolve():
        raise ResnetEdgeError(f"--output {output} is the input model; choose another file for the int8 model")
    if bool(reader.raw_pixels) != metadata.raw_input:
        # Calibrating on anything but what the model takes would fix every activation range wrongly.
        takes, serves = ("raw uint8 pixels", "normalized floats") if metadata.raw_input else \
            ("normalized floats", "raw uint8 pixels")
        raise ResnetEdgeError(f"{model} takes {takes} but the calibration reader serves {serves}; build the "
                              f"reader with raw_pixels={metadata.raw_input}")
    return props, metadata


def _fall_back(work: _Work, settings: QuantizationSettings, reader: CalibrationReader, gate: _Gate,
               comparison: AccuracyComparison, max_drop: float,
               log: Callable[[str], None]) -> tuple[QuantizationSettings, AccuracyComparison, list[FallbackStep]]:
    """Keep the most sensitive nodes in fp32, one at a time, until the drop is within ``max_drop``."""
    work.candidate.replace(work.all_int8)
    ranking = _ranking(work.preprocessed, work.all_int8, reader, work.folder)
    log(f"fallback: int8 loses {comparison.drop:.2f} points > --max-drop {max_drop}; keeping the most "
        f"sensitive of {len(ranking)} nodes in fp32 one at a time")
    steps = []
    for node in ranking:
        settings = settings.with_fp32_nodes((*settings.fp32_nodes, node.name))
        quantize_qdq(work.preprocessed, work.candidate, settings, reader, work.ranges)
        comparison = gate.measure(work.candidate)
        steps.append(FallbackStep(node.name, node.op_type, comparison.drop, comparison.agreement))
        log(f"  fp32 {node.name} ({node.op_type}): drop {comparison.drop:+.2f} points, "
            f"agreement {100 * comparison.agreement:.2f} %")
        if comparison.drop <= max_drop:
            break
    return settings, comparison, steps


def _gate_error(comparison: AccuracyComparison, steps: list[FallbackStep], max_drop: float, fallback: bool,
                output: Path) -> AccuracyGateError:
    tried = f" even with {len(steps)} nodes kept in fp32" if steps else ""
    hint = "" if fallback else "; pass --fallback to keep sensitive nodes in fp32,"
    return AccuracyGateError(
        f"int8 loses {comparison.drop:.2f} top-1 points on {comparison.split} (fp32 "
        f"{100 * comparison.fp32_top1:.2f} %, int8 {100 * comparison.int8_top1:.2f} %){tried}, more than "
        f"--max-drop {max_drop}{hint} or try another --method or more calibration images; "
        f"nothing written to {output}"
    )


def _fallback_cost(work: _Work) -> dict[str, float]:
    """Latency and size of the model with fp32 nodes against the all-int8 one."""
    return {
        "all_int8_bytes": work.all_int8.stat().st_size,
        "bytes": work.candidate.stat().st_size,
        "all_int8_batch1_p50_ms": _batch1_p50_ms(work.all_int8),
        "batch1_p50_ms": _batch1_p50_ms(work.candidate),
    }


def _int8_props(props: dict[str, str], settings: QuantizationSettings, cpu: CpuInt8Support,
                reader: CalibrationReader, comparison: AccuracyComparison) -> dict[str, str]:
    """Every metadata entry of the fp32 model, plus how the int8 one was made and what it measured."""
    return {
        **props,
        KEY_PRECISION: "int8",
        KEY_QUANTIZATION: json.dumps({**settings.to_dict(), "cpu": cpu.describe()}),
        KEY_CALIBRATION: reader.description,
        KEY_INT8_ACCURACY: json.dumps(_accuracy_record(comparison)),
    }


def _ranking(preprocessed: Path, qdq_model: Path, reader: CalibrationReader, work: Path) -> list[NodeSensitivity]:
    """Nodes by sensitivity, measured on the first calibration images."""
    first_batches = max(1, SENSITIVITY_IMAGES // reader.batch_size)
    reader.set_range(0, first_batches)
    try:
        return rank_nodes(preprocessed, qdq_model, reader, work, FALLBACK_OP_TYPES)
    finally:
        reader.set_range(0, len(reader))


def _accuracy_record(comparison: AccuracyComparison) -> dict[str, Any]:
    return {
        "split": comparison.split,
        "source": comparison.source,
        "images": comparison.images,
        "fp32_top1": round(comparison.fp32_top1, 6),
        "int8_top1": round(comparison.int8_top1, 6),
        "agreement": round(comparison.agreement, 6),
        "drop_points": round(comparison.drop, 4),
        "per_class_delta_points": comparison.per_class_delta,
    }
