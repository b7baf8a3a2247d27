"""What every export passes before its file is written, whatever the model came from.

1. the resnet-edge metadata is attached and the full ONNX checker passes;
2. parity: onnxruntime on the new bytes matches the reference (the PyTorch model
   traced, or the ONNX file as given) on real and random inputs at batch 1, 7, 64;
3. the sanity accuracy check (``export.sanity``) on the built-in test sample,
   when asked: it catches a wrong normalization or class order.

Only then are the bytes written, atomically: a failed export leaves an existing
file as it was. Nothing here imports torch, so adopting an ONNX file needs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from resnet_edge.data import load_sample
from resnet_edge.errors import ExportError
from resnet_edge.export.onnx_metadata import with_props_checked
from resnet_edge.export.deployment import whence
from resnet_edge.export.parity import PARITY_BATCHES, ParityReport, Reference, check_parity
from resnet_edge.export.sanity import SanityReport, require_sane, sanity_top1
from resnet_edge.files import atomic_write_bytes
from resnet_edge.metadata import ModelMetadata
from resnet_edge.normalization import normalize
from resnet_edge.runtime.session import DEFAULT_PROVIDERS


@dataclass(frozen=True)
class ExportResult:
    output: Path
    metadata: ModelMetadata
    parity: ParityReport
    opset: int
    size_bytes: int
    sanity: SanityReport | None = None  # None when the accuracy check did not run


def attach_metadata(onnx_bytes: bytes, metadata: ModelMetadata) -> bytes:
    """Add resnet-edge ``metadata_props``, run the full ONNX checker, return the new bytes."""
    proto = onnx.load_from_string(onnx_bytes)
    existing = {prop.key for prop in proto.metadata_props}
    props = metadata.to_props()
    clashes = sorted(existing & props.keys())
    if clashes:
        raise ExportError(f"ONNX model already has metadata key {clashes[0]!r}")
    return with_props_checked(proto, props, ExportError, "exported model")


def parity_images(mean: tuple[float, ...], std: tuple[float, ...], count: int = max(PARITY_BATCHES),
                  raw: bool = False) -> np.ndarray:
    """Real CIFAR-10 test images from the built-in sample, as the model takes them (normalized, or raw pixels)."""
    images = load_sample("test").images[:count]
    return images if raw else normalize(images, mean, std)


def write_checked(onnx_bytes: bytes, metadata: ModelMetadata, reference: Reference, output: Path, opset: int, *,
                  accuracy_check: bool, checked_against: str = "PyTorch") -> ExportResult:
    """Attach ``metadata``, pass every gate above, then write ``output``; raise :class:`ExportError` otherwise."""
    onnx_bytes = attach_metadata(onnx_bytes, metadata)
    session = ort.InferenceSession(onnx_bytes, providers=list(DEFAULT_PROVIDERS))
    report = check_parity(reference, session, parity_images(metadata.mean, metadata.std, raw=metadata.raw_input))
    if not report.passed:
        worst = max(report.failures(), key=lambda case: case.max_abs_diff / case.tolerance)
        raise ExportError(
            f"ONNX output does not match {checked_against} ({worst.name}: max |Δlogit| {worst.max_abs_diff:.2e} "
            f"> {worst.tolerance:.2e} or {worst.argmax_mismatches} argmax changes); nothing written to {output}"
        )
    sanity = None
    if accuracy_check:
        sanity = sanity_top1(session, metadata)
        require_sane(sanity, metadata, whence((metadata.provenance or {}).get("normalization", "default")), output)
    atomic_write_bytes(output, onnx_bytes)
    return ExportResult(output, metadata, report, opset, len(onnx_bytes), sanity)
