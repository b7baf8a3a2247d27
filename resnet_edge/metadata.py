"""The interface of an exported model: tensor names, layout and ONNX metadata keys.

Export writes these keys into the ONNX file's ``metadata_props``; the runtime
reads the same keys back through onnxruntime's ``custom_metadata_map``. Values
are strings (ONNX requires it); lists and numbers are JSON-encoded. This module
imports neither torch nor onnx, so the runtime can use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from resnet_edge.errors import MetadataError

ONNX_SUFFIX = ".onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_LAYOUT = "NCHW"  # float32 (batch, 3, H, W), normalized by the caller
RAW_INPUT_LAYOUT = "NHWC_UINT8"  # uint8 (batch, H, W, 3) pixels; normalization is inside the graph (--raw-input)
INPUT_LAYOUTS = (INPUT_LAYOUT, RAW_INPUT_LAYOUT)
BATCH_AXIS_NAME = "batch"
# The ONNX opsets export writes: 13 is the oldest with every operator the graphs use; 20 the newest tested.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 20

METADATA_VERSION = "1"

_PREFIX = "resnet_edge."
KEY_METADATA_VERSION = _PREFIX + "metadata_version"
KEY_CLASS_NAMES = _PREFIX + "class_names"
KEY_MEAN = _PREFIX + "mean"
KEY_STD = _PREFIX + "std"
KEY_INPUT_LAYOUT = _PREFIX + "input_layout"
KEY_IMAGE_SIZE = _PREFIX + "image_size"
KEY_PRECISION = _PREFIX + "precision"
KEY_CHECKPOINT_SHA256 = _PREFIX + "checkpoint_sha256"
KEY_TOOLKIT_VERSION = _PREFIX + "toolkit_version"
KEY_VAL_TOP1 = _PREFIX + "val_top1"
# JSON: where the model came from (file format, weights key, name layout) and where its normalization and
# class names came from ("checkpoint", "option" or "default"); see resnet_edge.export.model_file.
KEY_PROVENANCE = _PREFIX + "provenance"
# Written by 'resnet-edge quantize' (JSON): how the int8 model was made and what it measured against fp32.
KEY_QUANTIZATION = _PREFIX + "quantization"
KEY_CALIBRATION = _PREFIX + "calibration"
KEY_INT8_ACCURACY = _PREFIX + "int8_accuracy"
PRECISIONS = ("fp32", "int8")

REQUIRED_KEYS = (
    KEY_METADATA_VERSION,
    KEY_CLASS_NAMES,
    KEY_MEAN,
    KEY_STD,
    KEY_INPUT_LAYOUT,
    KEY_IMAGE_SIZE,
    KEY_PRECISION,
)


@dataclass(frozen=True)
class ModelMetadata:
    """What a consumer of the ONNX file needs to feed it and read its output.

    ``mean`` and ``std`` apply to pixels scaled to [0, 1] (uint8 / 255).
    """

    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    precision: str = "fp32"
    input_layout: str = INPUT_LAYOUT
    checkpoint_sha256: str | None = None
    toolkit_version: str | None = None
    val_top1: float | None = None
    provenance: Mapping[str, str] | None = None

    @property
    def raw_input(self) -> bool:
        """Whether the model takes uint8 pixels and normalizes them itself (exported with ``--raw-input``)."""
        return self.input_layout == RAW_INPUT_LAYOUT

    def describe_interface(self) -> str:
        """``input 'input' float32 (batch, 3, 32, 32), normalized, output 'logits'``: the graph's contract in words."""
        size = self.image_size
        takes = (f"uint8 ({BATCH_AXIS_NAME}, {size}, {size}, 3) pixels" if self.raw_input
                 else f"float32 ({BATCH_AXIS_NAME}, 3, {size}, {size}), normalized")
        return f"input '{INPUT_NAME}' {takes}, output '{OUTPUT_NAME}'"

    @property
    def input_spec(self) -> tuple[str, list[int], str]:
        """The input this metadata describes: onnxruntime's type name, per-image dims, and a short description."""
        size = self.image_size
        if self.raw_input:
            return "tensor(uint8)", [size, size, 3], "NHWC uint8"
        return "tensor(float)", [3, size, size], "NCHW float32"

    def to_props(self) -> dict[str, str]:
        props = {
            KEY_METADATA_VERSION: METADATA_VERSION,
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_MEAN: json.dumps(list(self.mean)),
            KEY_STD: json.dumps(list(self.std)),
            KEY_INPUT_LAYOUT: self.input_layout,
            KEY_IMAGE_SIZE: str(self.image_size),
            KEY_PRECISION: self.precision,
        }
        if self.checkpoint_sha256 is not None:
            props[KEY_CHECKPOINT_SHA256] = self.checkpoint_sha256
        if self.toolkit_version is not None:
            props[KEY_TOOLKIT_VERSION] = self.toolkit_version
        if self.val_top1 is not None:
            props[KEY_VAL_TOP1] = repr(float(self.val_top1))
        if self.provenance is not None:
            props[KEY_PROVENANCE] = json.dumps(dict(self.provenance), sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """Parse ``metadata_props``; raise :class:`MetadataError` naming what is missing or bad."""
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise MetadataError(
                f"{source} lacks resnet-edge metadata ({', '.join(missing)}); "
                "expected an ONNX file written by 'resnet-edge export'"
            )
        if props[KEY_METADATA_VERSION] != METADATA_VERSION:
            raise MetadataError(
                f"{source} has metadata version {props[KEY_METADATA_VERSION]!r}; "
                f"this resnet-edge reads version {METADATA_VERSION!r}"
            )
        try:
            class_names = tuple(str(name) for name in json.loads(props[KEY_CLASS_NAMES]))
            mean = tuple(float(v) for v in json.loads(props[KEY_MEAN]))
            std = tuple(float(v) for v in json.loads(props[KEY_STD]))
            image_size = int(props[KEY_IMAGE_SIZE])
            val_top1 = float(props[KEY_VAL_TOP1]) if KEY_VAL_TOP1 in props else None
            provenance = json.loads(props[KEY_PROVENANCE]) if KEY_PROVENANCE in props else None
            if provenance is not None and not isinstance(provenance, dict):
                raise ValueError(f"{KEY_PROVENANCE} is {type(provenance).__name__}, expected a JSON object")
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{source} has malformed resnet-edge metadata: {exc}") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise MetadataError(
                f"{source} metadata has mean {mean} and std {std}; expected 3 values each, std > 0"
            )
        if props[KEY_PRECISION] not in PRECISIONS:
            raise MetadataError(
                f"{source} declares precision {props[KEY_PRECISION]!r}; this resnet-edge reads "
                f"{' or '.join(map(repr, PRECISIONS))}"
            )
        if props[KEY_INPUT_LAYOUT] not in INPUT_LAYOUTS:
            raise MetadataError(
                f"{source} declares input layout {props[KEY_INPUT_LAYOUT]!r}; "
                f"this resnet-edge reads {' or '.join(map(repr, INPUT_LAYOUTS))}"
            )
        return cls(
            class_names=class_names,
            mean=mean,
            std=std,
            image_size=image_size,
            precision=props[KEY_PRECISION],
            input_layout=props[KEY_INPUT_LAYOUT],
            checkpoint_sha256=props.get(KEY_CHECKPOINT_SHA256),
            toolkit_version=props.get(KEY_TOOLKIT_VERSION),
            val_top1=val_top1,
            provenance=provenance,
        )
