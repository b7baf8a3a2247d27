"""Publish a finished run as the package's reference model (``resnet_edge/reference/``).

    python scripts/publish_reference.py runs/ref --data-dir D --command "resnet-edge train ..." --commit SHA

Takes the run's ``best.pt`` (chosen on the validation split during training),
keeps its weights as fp16 without training state, measures the *shipped* weights
once on the validation and test splits (fp32 compute, plain and with flip TTA),
and writes the checkpoint, ``run.json`` and the run's ``metrics.jsonl``. The
test split is read here for the first and only time in the run's life; nothing
is selected on it. All three files are written only after every measurement
succeeded.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from resnet_edge.checkpoint import inference_payload, load_checkpoint, save_checkpoint
from resnet_edge.data import load_split, load_train_val
from resnet_edge.evaluate import evaluate_model
from resnet_edge.files import atomic_write_bytes, file_sha256
from resnet_edge.reference import REFERENCE_CARD, REFERENCE_CHECKPOINT, REFERENCE_METRICS
from resnet_edge.run_folder import LAST, load_run, write_metrics
from resnet_edge.hardware import hardware_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--command", required=True, help="the exact command that trained the run")
    parser.add_argument("--commit", required=True, help="the git commit of resnet-edge that trained the run")
    args = parser.parse_args()

    run = load_run(args.run_dir)
    last = load_checkpoint(args.run_dir / LAST)
    if last["epoch"] < last["config"]["epochs"]:
        parser.error(f"{args.run_dir} is not finished ({last['epoch']}/{last['config']['epochs']} epochs)")
    best = run.best
    _, val = load_train_val(args.data_dir)
    test = load_split("test", args.data_dir)

    shipped = inference_payload(best)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / REFERENCE_CHECKPOINT.name
        save_checkpoint(candidate, shipped)
        for split in (val, test):
            for tta in (False, True):
                report = evaluate_model(candidate, split, tta=tta)
                results[f"{split.name}_top1{'_tta' if tta else ''}"] = report["top1"]
                print(f"{split.name}{' (flip TTA)' if tta else ''}: top-1 {report['top1']:.4f}")
        # The exported model's metadata should carry the accuracy of the shipped weights.
        shipped["val_top1"] = results["val_top1"]
        save_checkpoint(candidate, shipped)
        checkpoint_bytes = candidate.read_bytes()

    hardware = best.get("hardware")
    if not hardware or hardware == platform.machine():  # early runs recorded only the architecture
        hardware = hardware_description(torch.device(best.get("device", "cpu")))
    card = {
        "command": args.command,
        "commit": args.commit,
        "epochs": last["epoch"],
        "best_epoch": best["epoch"],
        **results,
        "val_top1_during_training": best["val_top1"],
        "train_images": best["train_data"]["images"],
        "val_images": best["train_data"]["val_images"],
        "wall_seconds": run.wall_seconds,
        "mean_img_per_s": run.mean_img_per_s,
        "config": best["config"],
        "hardware": hardware,
        "device": best.get("device"),
        "torch_version": best.get("torch_version"),
        "toolkit_version": best.get("toolkit_version"),
        "weights_dtype": "float16",
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(REFERENCE_CHECKPOINT, checkpoint_bytes)
    card["checkpoint_sha256"] = file_sha256(REFERENCE_CHECKPOINT)
    card["checkpoint_bytes"] = REFERENCE_CHECKPOINT.stat().st_size
    write_metrics(REFERENCE_METRICS, last["metrics"])
    atomic_write_bytes(REFERENCE_CARD, (json.dumps(card, indent=2) + "\n").encode())
    print(f"wrote {REFERENCE_CHECKPOINT} ({card['checkpoint_bytes'] / 1e6:.1f} MB), {REFERENCE_CARD}, {REFERENCE_METRICS}")


if __name__ == "__main__":
    main()
