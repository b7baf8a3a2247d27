"""Parity between a reference model and its ONNX export, measured through onnxruntime.

The reference is the PyTorch model that was traced or, for an adopted ONNX
file, that file as given (run by onnxruntime before any change was made).

A case passes when ``max |Δlogit| <= 1e-4 × max(1, max |logit|)`` and every
argmax agrees. Cases cover real CIFAR-10 images (from the built-in sample) and
random inputs (normalized floats, or uint8 pixels for a raw-input model), each
at several batch sizes, so both the weights and the dynamic batch axis are
exercised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from resnet_edge.errors import ExportError, first_line
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME
from resnet_edge.runtime.session import DEFAULT_PROVIDERS

if TYPE_CHECKING:
    from torch import nn

Reference = Callable[[np.ndarray], np.ndarray]  # a batch as the model takes it → logits

RELATIVE_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 7, 64)


@dataclass(frozen=True)
class ParityCase:
    name: str
    batch_size: int
    max_abs_diff: float
    tolerance: float
    argmax_mismatches: int

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_mismatches == 0


@dataclass(frozen=True)
class ParityReport:
    cases: tuple[ParityCase, ...]

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    @property
    def max_abs_diff(self) -> float:
        return max(case.max_abs_diff for case in self.cases)

    def failures(self) -> list[ParityCase]:
        return [case for case in self.cases if not case.passed]

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "cases": [asdict(case) | {"passed": case.passed} for case in self.cases],
        }


def parity_inputs(real_images: np.ndarray, batches: tuple[int, ...] = PARITY_BATCHES,
                  seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Named batches like ``real_images``: the first b real images and b random inputs for each b.

    Random inputs are standard normal for float32 inputs and uniform pixels for uint8 ones.
    """
    rng = np.random.default_rng(seed)
    cases = []
    for batch in batches:
        shape = (batch, *real_images.shape[1:])
        if real_images.dtype == np.uint8:
            random = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            random = rng.standard_normal(shape, dtype=np.float32)
        cases.append((f"real images, batch {batch}", real_images[:batch]))
        cases.append((f"random inputs, batch {batch}", random))
    return cases


def torch_reference(model: nn.Module) -> Reference:
    """``model`` (fp32, eval mode, no autograd) as a numpy → numpy function."""
    import torch

    model = model.float().eval()

    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(inputs)).numpy()

    return run


def check_parity(reference: nn.Module | Reference, onnx_model: bytes | str | ort.InferenceSession,
                 real_images: np.ndarray, batches: tuple[int, ...] = PARITY_BATCHES) -> ParityReport:
    """Compare the reference's logits with onnxruntime's on real and random inputs.

    ``reference`` is a PyTorch module or a numpy function; ``real_images`` are what the model takes
    (normalized float32 ``(N, 3, 32, 32)``, or uint8 ``(N, 32, 32, 3)`` pixels for a raw-input model);
    N must cover the largest batch.
    """
    run = torch_reference(reference) if hasattr(reference, "state_dict") else reference
    session = onnx_model if isinstance(onnx_model, ort.InferenceSession) else \
        ort.InferenceSession(onnx_model, providers=list(DEFAULT_PROVIDERS))
    cases = []
    for name, inputs in parity_inputs(real_images, batches):
        expected = run(inputs)
        try:
            actual = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
        except Exception as exc:  # onnxruntime's errors name no class a caller could catch more narrowly
            raise ExportError(f"onnxruntime cannot run the exported model on {name}: {first_line(exc)}") from None
        cases.append(ParityCase(
            name=name,
            batch_size=len(inputs),
            max_abs_diff=float(np.abs(expected - actual).max()),
            tolerance=RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max())),
            argmax_mismatches=int((expected.argmax(1) != actual.argmax(1)).sum()),
        ))
    return ParityReport(tuple(cases))
