"""The run folder that ``resnet-edge train`` writes and ``report``, ``demo`` and publishing read.

One module owns its layout and records, so no reader needs the trainer:

- ``last.pt``: the checkpoint after every epoch (what ``--resume`` continues from);
- ``best.pt``: the checkpoint of the best validation epoch so far;
- ``metrics.jsonl``: one JSON object per finished epoch with at least :data:`EPOCH_KEYS`.

Writes are atomic (``resnet_edge.files.atomic_write``). Reading the metrics needs no
torch; :func:`load_run` also reads ``best.pt`` and so needs torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet_edge.data import SAMPLE_SOURCE
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.files import atomic_write_bytes

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.jsonl"
EPOCH_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "img_per_s", "seconds")
_EXPECTED = "expected a run folder written by 'resnet-edge train'"


class RunFolderError(ResnetEdgeError):
    """The folder is not (yet) a training run: no metrics, no best.pt, or unreadable records."""


@dataclass(frozen=True)
class TrainingRun:
    """A run folder as written by ``resnet-edge train``: one metrics record per epoch and ``best.pt``."""

    path: Path
    metrics: list[dict[str, Any]]
    best: dict[str, Any]

    @property
    def epochs_done(self) -> int:
        return int(self.metrics[-1]["epoch"])

    @property
    def epochs_planned(self) -> int:
        return int(self.best["config"]["epochs"])

    @property
    def wall_seconds(self) -> float:
        return float(sum(record["seconds"] for record in self.metrics))

    @property
    def mean_img_per_s(self) -> float:
        return float(np.mean([record["img_per_s"] for record in self.metrics]))

    @property
    def trained_on_sample(self) -> bool:
        return self.best.get("train_data", {}).get("source") == SAMPLE_SOURCE


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON line per epoch record, written atomically."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write_bytes(path, text.encode())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The epoch records of ``metrics.jsonl``, each checked for every key in :data:`EPOCH_KEYS`."""
    if not path.is_file():
        raise RunFolderError(f"no {path.name} in {path.parent}; {_EXPECTED}")
    records = []
    # errors="replace": a binary file must end in the one-line error below, not a UnicodeDecodeError.
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            raise RunFolderError(f"{path} line {number} is not a JSON object; {_EXPECTED}")
        bad = [key for key in EPOCH_KEYS if not isinstance(record.get(key), (int, float))]
        if bad:
            raise RunFolderError(f"{path} line {number} lacks numeric {', '.join(bad)}; {_EXPECTED}")
        records.append(record)
    if not records:
        raise RunFolderError(f"{path} holds no epoch records; {_EXPECTED}, after at least one epoch")
    return records


def load_run(run_dir: str | Path) -> TrainingRun:
    """Read ``metrics.jsonl`` and ``best.pt`` of a run folder (needs torch, for the checkpoint)."""
    from resnet_edge.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / METRICS)
    best_path = run_dir / BEST
    if not best_path.is_file():
        raise RunFolderError(f"no {BEST} in {run_dir}; {_EXPECTED}")
    return TrainingRun(run_dir, metrics, load_checkpoint(best_path))
