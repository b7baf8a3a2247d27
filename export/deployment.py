"""What an exported model's metadata promises beyond its weights: normalization and class names, and whence each came.

A resnet-edge checkpoint states both; a foreign file (kuangliu, torchvision,
Lightning, timm, a bare state_dict, someone's ONNX) states neither, so they come
from the user's options or else from the toolkit's CIFAR-10 defaults. The export
prints, and the metadata records, which of the three each came from: a wrong
guess is then visible rather than silent, and the sanity accuracy check
(``export.sanity``) catches the usual mistakes (another mean/std, another class
order). Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resnet_edge.cifar10 import CHANNELS, CLASS_NAMES, MEAN, STD
from resnet_edge.errors import ExportError
from resnet_edge.metadata import ModelMetadata

FROM_CHECKPOINT, FROM_OPTION, FROM_DEFAULT = "checkpoint", "option", "default"


@dataclass(frozen=True)
class Deployment:
    """Normalization (on the [0, 1] pixel scale) and class names, each with where it came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    normalization_from: str
    class_names_from: str

    @classmethod
    def resolve(cls, num_classes: int, *, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                class_names: Sequence[str] | None = None,
                found_normalization: tuple[Sequence[float], Sequence[float]] | None = None,
                found_class_names: Sequence[str] | None = None) -> Deployment:
        """The user's values over the file's (``found_*``) over the CIFAR-10 defaults, checked against the model.

        ``mean`` and ``std`` are given together or not at all; there must be one class name per output.
        """
        if (mean is None) != (std is None):
            raise ExportError("give both --mean and --std (3 values each on the [0, 1] pixel scale), or neither")
        if mean is not None:
            norm, norm_from = (check_channels("mean", mean), check_channels("std", std, positive=True)), FROM_OPTION
        elif found_normalization is not None:
            norm, norm_from = (tuple(map(float, found_normalization[0])),
                               tuple(map(float, found_normalization[1]))), FROM_CHECKPOINT
        else:
            norm, norm_from = (MEAN, STD), FROM_DEFAULT
        if class_names is not None:
            names, names_from = check_class_names(class_names), FROM_OPTION
        elif found_class_names is not None:
            names, names_from = tuple(found_class_names), FROM_CHECKPOINT
        elif num_classes == len(CLASS_NAMES):
            names, names_from = CLASS_NAMES, FROM_DEFAULT
        else:
            raise ExportError(f"the model has {num_classes} outputs, so CIFAR-10's 10 class names do not fit; "
                              f"give its {num_classes} class names with --class-names")
        if len(names) != num_classes:
            raise ExportError(f"{len(names)} class names for a model with {num_classes} outputs; "
                              "expected one name per output, in logit order")
        return cls(norm[0], norm[1], names, norm_from, names_from)

    @classmethod
    def of(cls, metadata: ModelMetadata) -> Deployment:
        """What an exported model's metadata says (sources unknown to older files read as defaults)."""
        provenance = metadata.provenance or {}
        return cls(metadata.mean, metadata.std, metadata.class_names, provenance.get("normalization", FROM_DEFAULT),
                   provenance.get("class_names", FROM_DEFAULT))

    @property
    def from_checkpoint(self) -> bool:
        """Whether the file itself stated every fact (then the sanity accuracy check has nothing to catch)."""
        return self.normalization_from == FROM_CHECKPOINT and self.class_names_from == FROM_CHECKPOINT

    def describe(self) -> str:
        """``mean (…) std (…) from the checkpoint; class names airplane, …, truck by default``."""
        shown = ", ".join(self.class_names[:3]) + (f", … ({len(self.class_names)})" if len(self.class_names) > 3 else "")
        return (f"normalization mean {_floats(self.mean)} std {_floats(self.std)} ({whence(self.normalization_from)}); "
                f"class names {shown} ({whence(self.class_names_from)})")

    def provenance(self) -> dict[str, str]:
        return {"normalization": self.normalization_from, "class_names": self.class_names_from}


def check_channels(name: str, values: Sequence[float], positive: bool = False) -> tuple[float, ...]:
    """Three finite per-channel values on the [0, 1] pixel scale (std also > 0)."""
    values = tuple(float(v) for v in values)
    if len(values) != CHANNELS:
        raise ExportError(f"{name} has {len(values)} values {_floats(values)}; expected {CHANNELS} (R, G, B)")
    low = 0.0 if not positive else math.ulp(0.0)
    if not all(math.isfinite(v) and low <= v <= 1.0 for v in values):
        bound = "in (0, 1]" if positive else "in [0, 1]"
        raise ExportError(f"{name} {_floats(values)} is not on the [0, 1] pixel scale; expected each value {bound} "
                          "(divide 0-255 statistics by 255)")
    return values


def check_class_names(names: Sequence[str]) -> tuple[str, ...]:
    """Non-empty, distinct class names."""
    names = tuple(str(name).strip() for name in names)
    if not names or any(not name for name in names):
        raise ExportError(f"class names {list(names)} include an empty name; expected one non-empty name per output")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ExportError(f"class name {repeated[0]!r} appears more than once; expected distinct names")
    return names


def parse_channels(name: str, text: str, positive: bool = False) -> tuple[float, ...]:
    """``"0.4914,0.4822,0.4465"`` → three checked floats."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ExportError(f"{name} {text!r} is not a comma-separated list of numbers; "
                          "expected 3 values on the [0, 1] pixel scale, e.g. 0.4914,0.4822,0.4465") from None
    return check_channels(name, values, positive)


def parse_class_names(text: str) -> tuple[str, ...]:
    """A comma-separated list, or the path of a text file with one name per line."""
    path = Path(text)
    if "," not in text and path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportError(f"cannot read class names from {path}: {exc}; expected UTF-8 text, "
                              "one name per line") from None
        return check_class_names([line for line in lines if line.strip()])
    if "," not in text and (path.suffix or "/" in text):
        raise ExportError(f"class names file not found: {text}; expected a text file with one name per line, "
                          "or a comma-separated list")
    return check_class_names(text.split(","))


def _floats(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def whence(source: str) -> str:
    """``from the checkpoint``, ``as given`` or ``CIFAR-10 default``."""
    return {FROM_CHECKPOINT: "from the checkpoint", FROM_OPTION: "as given", FROM_DEFAULT: "CIFAR-10 default"}[source]


# How `resnet-edge export` names each provenance "format" (see export.model_file and export.onnx_adopt).
FORMAT_NAMES = {
    "resnet-edge": "resnet-edge checkpoint",
    "lightning": "PyTorch Lightning checkpoint",
    "timm": "timm train.py checkpoint",
    "kuangliu": "kuangliu/pytorch-cifar checkpoint",
    "checkpoint dict": "checkpoint dict",
    "state_dict": "bare state_dict",
    "onnx": "ONNX file (adopted, not re-exported)",
}


def describe_provenance(provenance: dict[str, str]) -> str:
    """``kuangliu/pytorch-cifar checkpoint, weights 'net', kuangliu names, prefix 'module.'``."""
    parts = [FORMAT_NAMES.get(provenance["format"], provenance["format"])]
    if "weights" in provenance:
        parts.append(f"weights {provenance['weights']!r}")
    if "layout" in provenance:
        parts.append(f"{provenance['layout']} names")
    if "model_def" in provenance:
        parts.append(f"architecture {provenance['model_def']}")
    if provenance.get("prefix"):
        parts.append(f"prefix {provenance['prefix']!r}")
    if provenance.get("ema_weights"):
        parts.append(f"EMA weights {provenance['ema_weights']!r} not used (--ema)")
    if provenance.get("pruned_from"):
        try:
            ratio = json.loads(provenance.get("pruning", "{}")).get("ratio")
        except (ValueError, AttributeError):  # an adopted file's metadata may hold anything
            ratio = None
        parts.append(f"pruned{f' by {ratio:g}' if ratio is not None else ''} from {provenance['pruned_from']}")
    if provenance.get("left_out"):
        parts.append(f"left out {provenance['left_out']} (beside the network)")
    return ", ".join(parts)
