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
from typing import Any

from resnet_edge.data import Split
from resnet_edge.errors import MetadataError, ResnetEdgeError
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


def read_metadata_props(model_path: Path) -> dict[str, str]:
    onnx = require("onnx", "quantize", "int8 quantization")
    try:
        proto = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for files that are not ONNX
        raise MetadataError(f"cannot read {model_path} as an ONNX model: {str(exc).splitlines()[0]}") from None
    return {prop.key: prop.value for prop in proto.metadata_props}


def _with_metadata(model_path: Path, props: dict[str, str]) -> bytes:
    """The model at ``model_path`` with exactly ``props`` as metadata, after the full ONNX checker."""
    onnx = require("onnx", "quantize", "int8 quantization")
    proto = onnx.load(str(model_path))
    del proto.metadata_props[:]
    return with_props_checked(proto, props, ResnetEdgeError, "the int8 model")


def _batch1_p50_ms(model_path: Path) -> float:
    return measure_latency(Predictor(model_path), batch_size=1, warmup=20, iters=200).p50_ms


def quantize_onnx(
    model: str | Path,
    output: str | Path,
    reader: Any,
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

    ``reader`` is a ``CifarCalibrationReader`` (its ``description`` goes into the
    metadata). Raises :class:`AccuracyGateError`, writing nothing, when the drop
    stays above ``max_drop`` (after the fallback, when enabled).
    """
    model, output = Path(model), Path(output)
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
    reader.raw_pixels = metadata.raw_input  # calibrate with exactly what the model takes
    cpu = cpu or cpu_int8_support()
    settings, note = settings_for_cpu(cpu, method or DEFAULT_METHOD, per_channel, reduce_range, activation_type)
    notes = [note] if note else []
    for line in notes:
        log(f"note: {line}")

    with tempfile.TemporaryDirectory(prefix="resnet-edge-quantize-") as tmp:
        work = Path(tmp)
        preprocessed, candidate, cache = work / "preprocessed.onnx", work / "int8.onnx", work / "ranges.json"
        log(f"calibrating ({settings.method}) on {reader.description}; CPU: {cpu.describe()}")
        started = time.perf_counter()
        preprocess(model, preprocessed)
        quantize_qdq(preprocessed, candidate, settings, reader, cache)
        seconds = time.perf_counter() - started
        log(f"quantized in {seconds:.1f} s; evaluating fp32 and int8 on {len(eval_split)} {eval_split.name} "
            f"images ({eval_split.source})")

        fp32_logits = onnx_logits(model, eval_split)

        def measure(path: Path) -> AccuracyComparison:
            return compare(fp32_logits, onnx_logits(path, eval_split), eval_split, metadata.class_names)

        first = comparison = measure(candidate)
        log(f"int8: {first.summary()}")
        steps: list[FallbackStep] = []
        all_int8 = work / "all-int8.onnx"
        if comparison.drop > max_drop and fallback:
            candidate.replace(all_int8)
            ranking = _ranking(preprocessed, all_int8, reader, work)
            log(f"fallback: int8 loses {comparison.drop:.2f} points > --max-drop {max_drop}; keeping the most "
                f"sensitive of {len(ranking)} nodes in fp32 one at a time")
            for node in ranking:
                settings = settings.with_fp32_nodes((*settings.fp32_nodes, node.name))
                quantize_qdq(preprocessed, candidate, settings, reader, cache)
                comparison = measure(candidate)
                steps.append(FallbackStep(node.name, node.op_type, comparison.drop, comparison.agreement))
                log(f"  fp32 {node.name} ({node.op_type}): drop {comparison.drop:+.2f} points, "
                    f"agreement {100 * comparison.agreement:.2f} %")
                if comparison.drop <= max_drop:
                    break
        if comparison.drop > max_drop:
            tried = f" even with {len(steps)} nodes kept in fp32" if steps else ""
            hint = "" if fallback else "; pass --fallback to keep sensitive nodes in fp32,"
            raise AccuracyGateError(
                f"int8 loses {comparison.drop:.2f} top-1 points on {eval_split.name} (fp32 "
                f"{100 * comparison.fp32_top1:.2f} %, int8 {100 * comparison.int8_top1:.2f} %){tried}, more than "
                f"--max-drop {max_drop}{hint} or try another --method or more calibration images; "
                f"nothing written to {output}"
            )
        fallback_cost = None
        if steps:
            fallback_cost = {
                "all_int8_bytes": all_int8.stat().st_size,
                "bytes": candidate.stat().st_size,
                "all_int8_batch1_p50_ms": _batch1_p50_ms(all_int8),
                "batch1_p50_ms": _batch1_p50_ms(candidate),
            }
        result = QuantizationResult(
            output=output,
            settings=settings,
            cpu=cpu.describe(),
            calibration=reader.description,
            comparison=comparison,
            first_comparison=first,
            fp32_bytes=model.stat().st_size,
            int8_bytes=0,
            seconds=seconds,
            notes=notes,
            fallback=steps,
            fallback_cost=fallback_cost,
        )
        int8_props = {
            **props,
            KEY_PRECISION: "int8",
            KEY_QUANTIZATION: json.dumps({**settings.to_dict(), "cpu": cpu.describe()}),
            KEY_CALIBRATION: reader.description,
            KEY_INT8_ACCURACY: json.dumps(_accuracy_record(comparison)),
        }
        data = _with_metadata(candidate, int8_props)
    atomic_write_bytes(output, data)
    result.int8_bytes = len(data)
    return result


def _ranking(preprocessed: Path, qdq_model: Path, reader: Any, work: Path) -> list[NodeSensitivity]:
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
