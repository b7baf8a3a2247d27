"""A model from anywhere → fp32 ONNX, with resnet-edge metadata, a parity check and a sanity accuracy check.

``export_onnx`` takes a file: a resnet-edge checkpoint, a foreign PyTorch file
(kuangliu, torchvision, Lightning, timm, a bare state_dict; see
``export.model_file``), optionally with the user's ``--model-def``, or an ONNX
file exported elsewhere, which is adopted rather than re-exported
(``export.onnx_adopt``). ``export_module`` takes any ``nn.Module`` held in
Python. Every path ends in ``export.gates``: nothing is written unless the ONNX
checker, the parity check and (for models whose normalization or class names did
not come from the file) the sanity accuracy check pass.

Exporter: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``),
chosen on purpose. The dynamo exporter became the default in torch 2.9 and has
produced ResNets that load and run but compute the wrong thing (pytorch issues
#169178: ResNet-18 at 0 % ImageNet accuracy; #166797: a Conv bias of the wrong
shape after BatchNorm folding). For a static conv net the TorchScript exporter
traces exactly what runs in eval mode and yields plain Conv/Relu/Add/Gemm nodes
that onnxruntime and its int8 quantizer handle well. The parity check would
catch a wrong graph from either exporter.

The graph has one input ``input`` float32 ``(batch, 3, 32, 32)`` (normalized, see
``resnet_edge.cifar10``) and one output ``logits`` ``(batch, classes)``; the batch
axis is dynamic (traced at batch 2 so no size-1 axis gets baked in). With
``raw_input=True`` the input is uint8 ``(batch, 32, 32, 3)`` pixels instead and
the graph itself transposes, scales and normalizes them (Transpose, Cast, Mul,
Add): applications feed pixels as decoded, and preprocessing cannot drift from
training.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from resnet_edge import __version__
from resnet_edge.cifar10 import CHANNELS, IMAGE_SIZE, MEAN, STD
from resnet_edge.errors import ExportError
from resnet_edge.export.deployment import Deployment
from resnet_edge.export.gates import ExportResult, write_checked
from resnet_edge.export.model_file import load_model, logit_count
from resnet_edge.export.parity import torch_reference
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
from resnet_edge.normalization import affine

TRACE_BATCH = 2


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


def export_module(model: torch.nn.Module, output: str | Path, *, mean: Sequence[float] = MEAN,
                  std: Sequence[float] = STD, class_names: Sequence[str] | None = None, opset: int = DEFAULT_OPSET,
                  raw_input: bool = False, accuracy_check: bool = True) -> ExportResult:
    """Export any ``nn.Module`` mapping ``(N, 3, 32, 32)`` normalized images to ``(N, K)`` logits.

    ``class_names`` defaults to CIFAR-10's when K is 10; ``accuracy_check`` scores the export on the
    built-in CIFAR-10 test sample and refuses it below 50 % (turn it off for other data sets).
    Raises :class:`ExportError` (and writes nothing) when a check fails.
    """
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"export_module takes a torch.nn.Module, got {type(model).__name__}")
    model = model.float().eval()
    output = Path(output)
    deployment = Deployment.resolve(logit_count(model, type(model).__name__), mean=mean, std=std,
                                    class_names=class_names)
    provenance = {"format": f"nn.Module {type(model).__module__}.{type(model).__qualname__}"}
    return _export(model, output, deployment, provenance, opset, raw_input, accuracy_check)


def export_onnx(model: str | Path, output: str | Path, opset: int | None = None, raw_input: bool = False, *,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                class_names: Sequence[str] | None = None, ema: bool = False, prefix: str | None = None,
                model_def: str | None = None, allow_pickle: bool = False,
                accuracy_check: bool | None = None) -> ExportResult:
    """Export the model file ``model`` to ``output`` after every check passes.

    ``mean``/``std``/``class_names`` override what the file states (our checkpoints) or the CIFAR-10
    defaults; ``ema``, ``prefix``, ``model_def`` and ``allow_pickle`` pick the weights out of a foreign
    file (``export.model_file``). ``accuracy_check`` None runs the sanity check unless the file itself
    stated the normalization and class names. ``opset`` None is 17 for a PyTorch model and the file's own
    for an adopted ONNX. ``raw_input`` puts the uint8 NHWC → normalized NCHW
    conversion inside the graph. Raises :class:`ExportError` (and writes nothing) when a check fails.
    """
    from resnet_edge.export.onnx_adopt import adopt_onnx, is_onnx_file

    model, output = Path(model), Path(output)
    if is_onnx_file(model):
        if ema or prefix is not None or model_def is not None or allow_pickle:
            raise ExportError(f"{model} is an ONNX file: --ema, --prefix, --model-def and --allow-pickle "
                              "apply to PyTorch files")
        return adopt_onnx(model, output, mean=mean, std=std, class_names=class_names, raw_input=raw_input,
                          opset=opset, accuracy_check=accuracy_check is not False)
    loaded = load_model(model, ema=ema, prefix=prefix, model_def=model_def, allow_pickle=allow_pickle)
    deployment = Deployment.resolve(loaded.num_classes, mean=mean, std=std, class_names=class_names,
                                    found_normalization=loaded.normalization, found_class_names=loaded.class_names)
    check = not deployment.from_checkpoint if accuracy_check is None else accuracy_check
    return _export(loaded.module, output, deployment, loaded.provenance, opset or DEFAULT_OPSET, raw_input, check,
                   sha256=loaded.sha256, val_top1=loaded.val_top1)


def _export(model: torch.nn.Module, output: Path, deployment: Deployment, provenance: dict[str, str], opset: int,
            raw_input: bool, accuracy_check: bool, sha256: str | None = None,
            val_top1: float | None = None) -> ExportResult:
    if raw_input:
        model = RawPixels(model, deployment.mean, deployment.std).eval()
    metadata = ModelMetadata(
        class_names=deployment.class_names,
        mean=deployment.mean,
        std=deployment.std,
        image_size=IMAGE_SIZE,
        precision="fp32",
        input_layout=RAW_INPUT_LAYOUT if raw_input else INPUT_LAYOUT,
        checkpoint_sha256=sha256,
        toolkit_version=__version__,
        val_top1=val_top1,
        provenance={**provenance, **deployment.provenance()},
    )
    return write_checked(model_to_onnx_bytes(model, opset), metadata, torch_reference(model), output, opset,
                         accuracy_check=accuracy_check)
