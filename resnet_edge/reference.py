"""The reference model shipped inside the package: a ResNet-18 trained by ``resnet-edge train``.

``resnet_edge/reference/`` holds the checkpoint (fp16 weights, no training
state), the run's ``metrics.jsonl`` and ``run.json`` with the exact command,
the validation and test top-1 of the shipped file, the wall time, the hardware
and the torch version. ``scripts/publish_reference.py`` writes all three from a
finished run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from resnet_edge.errors import ResnetEdgeError

REFERENCE_DIR = Path(__file__).parent / "reference"
REFERENCE_CHECKPOINT = REFERENCE_DIR / "resnet18_cifar10.pt"
REFERENCE_CARD = REFERENCE_DIR / "run.json"
REFERENCE_METRICS = REFERENCE_DIR / "metrics.jsonl"


def reference_checkpoint() -> Path:
    """Path of the shipped checkpoint; an error if this installation lacks it."""
    if not REFERENCE_CHECKPOINT.is_file():
        raise ResnetEdgeError(f"the reference checkpoint is missing from this installation ({REFERENCE_CHECKPOINT})")
    return REFERENCE_CHECKPOINT


def reference_card() -> dict[str, Any]:
    """The facts of the reference run (command, accuracy, wall time, hardware, versions)."""
    if not REFERENCE_CARD.is_file():
        raise ResnetEdgeError(f"the reference run card is missing from this installation ({REFERENCE_CARD})")
    return json.loads(REFERENCE_CARD.read_text())
