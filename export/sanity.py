"""The sanity accuracy check: an exported model's top-1 on the built-in 1,000 CIFAR-10 test images.

Its job is to catch what no parity check can: the graph computes exactly what
PyTorch does, but with the wrong normalization or a shuffled class order the
answers are wrong. A trained CIFAR-10 ResNet-18 scores about 94 % here, a
model fed the wrong statistics or label order typically scores far below 50 %,
chance is 10 %. Predictions are matched to labels by class *name*, so a model
whose outputs are in another order passes when ``--class-names`` says that
order. It runs through onnxruntime on the very bytes about to be written, with
the preprocessing their metadata prescribes (~1 s on two cores).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from resnet_edge.cifar10 import CLASS_NAMES
from resnet_edge.data import load_sample
from resnet_edge.errors import ExportError
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from resnet_edge.normalization import normalize

MIN_SANITY_TOP1 = 0.5
_CHUNK = 250


@dataclass(frozen=True)
class SanityReport:
    top1: float  # a fraction, over ``images`` images of the built-in test sample
    images: int

    @property
    def passed(self) -> bool:
        return self.top1 >= MIN_SANITY_TOP1

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "min_top1": MIN_SANITY_TOP1}


def sanity_top1(session: ort.InferenceSession, metadata: ModelMetadata) -> SanityReport:
    """Top-1 of ``session`` on the built-in test sample, fed as ``metadata`` says, labels matched by name."""
    to_cifar = cifar_index_of(metadata.class_names)
    split = load_sample("test")
    predicted = []
    for start in range(0, len(split), _CHUNK):
        images = split.images[start:start + _CHUNK]
        inputs = images if metadata.raw_input else normalize(images, metadata.mean, metadata.std)
        predicted.append(session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0].argmax(1))
    correct = to_cifar[np.concatenate(predicted)] == split.labels
    return SanityReport(float(correct.mean()), len(split))


def cifar_index_of(class_names: tuple[str, ...]) -> np.ndarray:
    """For each model output, the CIFAR-10 label index of its class name (case-insensitive)."""
    cifar = {name.lower(): index for index, name in enumerate(CLASS_NAMES)}
    lowered = [name.lower() for name in class_names]
    if sorted(lowered) != sorted(cifar):
        raise ExportError(
            f"the accuracy check scores CIFAR-10 test images, but the model's {len(class_names)} classes "
            f"({', '.join(class_names[:4])}{', …' if len(class_names) > 4 else ''}) are not CIFAR-10's 10; "
            "pass --no-accuracy-check for a model that is not a CIFAR-10 classifier"
        )
    return np.array([cifar[name] for name in lowered])


def require_sane(report: SanityReport, metadata: ModelMetadata, normalization_from: str, output: object) -> None:
    """Refuse a model below :data:`MIN_SANITY_TOP1`, naming the likely causes."""
    if report.passed:
        return
    ema = (metadata.provenance or {}).get("ema_weights")
    hint = f"; the file also holds EMA weights ({ema!r}), which --ema exports" if ema else ""
    raise ExportError(
        f"sanity check failed: top-1 {100 * report.top1:.1f} % on the built-in {report.images} CIFAR-10 test images "
        f"(< {100 * MIN_SANITY_TOP1:.0f} %); the normalization (mean {list(metadata.mean)}, std {list(metadata.std)}, "
        f"{normalization_from}) or the class order is probably wrong: pass --mean/--std/--class-names as the model "
        f"was trained, or --no-accuracy-check if it is not a CIFAR-10 classifier{hint}; nothing written to {output}"
    )
