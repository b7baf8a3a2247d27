"""The reference models shipped inside the package, both made by resnet-edge's own commands.

- ``resnet18``: the ResNet-18 trained by ``resnet-edge train`` (``resnet18_cifar10.pt``,
  ``run.json``, ``metrics.jsonl``);
- ``resnet18-p30``: that model pruned by 0.3 and fine-tuned by distillation with
  ``resnet-edge prune`` (``resnet18_p30_cifar10.pt``, ``run_p30.json``, ``metrics_p30.jsonl``):
  half the multiply-accumulates, for the fastest CPU inference.

Each has its checkpoint (fp16 weights, no training state), its run's metrics and
a card with the exact command, the validation and test top-1 of the shipped file
(fp32 and, for the pruned one, int8), the wall time, the hardware and the torch
version. ``scripts/publish_reference.py`` writes all three from a finished run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_edge.errors import ResnetEdgeError

REFERENCE_DIR = Path(__file__).parent / "reference"


@dataclass(frozen=True)
class Reference:
    """One shipped model: its checkpoint, its run card and its run's metrics."""

    name: str
    checkpoint: Path
    card: Path
    metrics: Path


REFERENCES = {
    "resnet18": Reference("resnet18", REFERENCE_DIR / "resnet18_cifar10.pt", REFERENCE_DIR / "run.json",
                          REFERENCE_DIR / "metrics.jsonl"),
    "resnet18-p30": Reference("resnet18-p30", REFERENCE_DIR / "resnet18_p30_cifar10.pt",
                              REFERENCE_DIR / "run_p30.json", REFERENCE_DIR / "metrics_p30.jsonl"),
}
PRUNED_REFERENCE = "resnet18-p30"
REFERENCE_CHECKPOINT = REFERENCES["resnet18"].checkpoint
REFERENCE_CARD = REFERENCES["resnet18"].card
REFERENCE_METRICS = REFERENCES["resnet18"].metrics


def reference(name: str = "resnet18") -> Reference:
    if name not in REFERENCES:
        raise ResnetEdgeError(f"unknown reference model {name!r}; expected one of {', '.join(REFERENCES)}")
    return REFERENCES[name]


def reference_checkpoint(name: str = "resnet18") -> Path:
    """Path of a shipped checkpoint; an error if this installation lacks it."""
    path = reference(name).checkpoint
    if not path.is_file():
        raise ResnetEdgeError(f"the reference checkpoint is missing from this installation ({path})")
    return path


def reference_card(name: str = "resnet18") -> dict[str, Any]:
    """The facts of a reference run (command, accuracy, wall time, hardware, versions)."""
    path = reference(name).card
    if not path.is_file():
        raise ResnetEdgeError(f"the reference run card is missing from this installation ({path})")
    return json.loads(path.read_text())
