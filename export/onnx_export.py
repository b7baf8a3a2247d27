"""Checkpoint → fp32 ONNX, with resnet-edge metadata and a parity check against PyTorch.

Exporter: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``),
chosen on purpose. The dynamo exporter became the default in torch 2.9 and has
produced ResNets that load and run but compute the wrong thing (pytorch issues
#169178: ResNet-18 at 0 % ImageNet accuracy; #166797: a Conv bias of the wrong
shape after BatchNorm folding). For a static conv net the TorchScript exporter
traces exactly what runs in eval mode and yields plain Conv/Relu/Add/Gemm nodes
that onnxruntime and its int8 quantizer handle well. The parity check below
would catch a wrong graph from either exporter.

The graph has one input ``input`` float32 ``(batch, 3, 32, 32)`` (normalized, see
``resnet_edge.cifar10``) and one output ``logits`` ``(batch, classes)``; the batch
axis is dynamic (traced at batch 2 so no size-1 axis gets baked in). With
``raw_input=True`` the input is uint8 ``(batch, 32, 32, 3)`` pixels instead and
the graph itself transposes, scales and normalizes them (Transpose, Cast, Mul,
Add): applications feed pixels as decoded, and preprocessing cannot drift from
training. Nothing is
written to the output path unless the ONNX checker and the parity check pass;
the write itself is atomic.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from resnet_edge import __version__
from resnet_edge.checkpoint import class_names_of, load_checkpoint, model_from_checkpoint, normalization_of
from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE
from resnet_edge.data import load_sample
from resnet_edge.errors import ExportError
from resnet_edge.export.onnx_metadata import with_props_checked
from resnet_edge.export.parity import PARITY_BATCHES, ParityReport, check_parity
from resnet_edge.files import atomic_write_bytes, file_sha256
from resnet_edge.metadata import (
    BATCH_AXIS_NAME,
    DEFAULT_OPSET,
    INPUT_LAYOUT,
    INPUT_NAME,
    MAX_OPSET,
    MIN_OPSET,
    OUTPUT_NAME,
    RAW_INPUT_LAYOUT,
    ModelMetadata,
)
from resnet_edge.normalization import affine, normalize

TRACE_BATCH = 2


@dataclass(frozen=True)
class ExportResult:
    output: Path
    metadata: ModelMetadata
    parity: ParityReport
    opset: int
    size_bytes: int


class RawPixels(torch.nn.Module):
    """``model`` behind its preprocessing: uint8 ``(N, H, W, 3)`` → ``(x / 255 - mean) / std`` NCHW → logits."""

    def __init__(self, model: torch.nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        # One multiply-add per pixel with resnet_edge.normalization's own scale and shift.
        scale, shift = affine(mean, std)
        self.register_buffer("scale", torch.from_numpy(scale.copy())[None])
        self.register_buffer("shift", torch.from_numpy(shift.copy())[None])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() * self.scale + self.shift
        return self.model(x)


def model_to_onnx_bytes(model: torch.nn.Module, opset: int = DEFAULT_OPSET) -> bytes:
    """Trace ``model`` (fp32, eval) into ONNX bytes with a dynamic batch axis.

    A :class:`RawPixels` model is traced with a uint8 NHWC example, any other with float32 NCHW.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"opset {opset} is not supported; expected {MIN_OPSET}..{MAX_OPSET}")
    model = model.float().eval()
    if isinstance(model, RawPixels):
        example = torch.randint(0, 256, (TRACE_BATCH, IMAGE_SIZE, IMAGE_SIZE, CHANNELS), dtype=torch.uint8)
    else:
        example = torch.randn(TRACE_BATCH, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation on every call; the choice is deliberate.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS_NAME}, OUTPUT_NAME: {0: BATCH_AXIS_NAME}},
            opset_version=opset,
            do_constant_folding=True,
        )
    return buffer.getvalue()


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


def export_onnx(checkpoint: str | Path, output: str | Path, opset: int = DEFAULT_OPSET,
                raw_input: bool = False) -> ExportResult:
    """Export a training checkpoint to ``output`` after the checker and parity pass.

    ``raw_input`` puts the uint8 NHWC → normalized NCHW conversion inside the graph.
    Raises :class:`ExportError` (and writes nothing) when either check fails.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    payload = load_checkpoint(checkpoint)
    mean, std = normalization_of(payload)
    model = model_from_checkpoint(payload)
    if raw_input:
        model = RawPixels(model, mean, std).eval()
    metadata = ModelMetadata(
        class_names=class_names_of(payload),
        mean=mean,
        std=std,
        image_size=IMAGE_SIZE,
        precision="fp32",
        input_layout=RAW_INPUT_LAYOUT if raw_input else INPUT_LAYOUT,
        checkpoint_sha256=file_sha256(checkpoint),
        toolkit_version=__version__,
        val_top1=payload.get("val_top1"),
    )
    onnx_bytes = attach_metadata(model_to_onnx_bytes(model, opset), metadata)
    report = check_parity(model, onnx_bytes, parity_images(mean, std, raw=raw_input))
    if not report.passed:
        worst = max(report.failures(), key=lambda case: case.max_abs_diff / case.tolerance)
        raise ExportError(
            f"ONNX output does not match PyTorch ({worst.name}: max |Δlogit| {worst.max_abs_diff:.2e} "
            f"> {worst.tolerance:.2e} or {worst.argmax_mismatches} argmax changes); nothing written to {output}"
        )
    atomic_write_bytes(output, onnx_bytes)
    return ExportResult(output, metadata, report, opset, len(onnx_bytes))
