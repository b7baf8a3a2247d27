"""Publish a finished run as one of the package's reference models (``resnet_edge/reference/``).

    python scripts/publish_reference.py runs/ref --data-dir D --command "resnet-edge train ..." --commit SHA
    python scripts/publish_reference.py runs/p30 --name resnet18-p30 --data-dir D --command "resnet-edge prune ..." --commit SHA

Takes the run's ``best.pt`` (chosen on the validation split during training),
keeps its weights as fp16 without training state, measures the *shipped* weights
once on the validation and test splits (fp32 compute, plain and with flip TTA,
and in int8 after the default ``resnet-edge export`` and ``resnet-edge quantize``),
and writes the checkpoint, the card and the run's ``metrics.jsonl``. The
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
from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.export import export_onnx
from resnet_edge.export.quantize import quantize_onnx
from resnet_edge.reference import REFERENCES
from resnet_edge.run_folder import LAST, load_run, write_metrics
from resnet_edge.hardware import hardware_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--command", required=True, help="the exact command that trained the run")
    parser.add_argument("--commit", required=True, help="the git commit of resnet-edge that trained the run")
    parser.add_argument("--name", choices=sorted(REFERENCES), default="resnet18", help="which reference to replace")
    args = parser.parse_args()
    target = REFERENCES[args.name]

    run = load_run(args.run_dir)
    last = load_checkpoint(args.run_dir / LAST)
    if last["epoch"] < last["config"]["epochs"]:
        parser.error(f"{args.run_dir} is not finished ({last['epoch']}/{last['config']['epochs']} epochs)")
    best = run.best
    if ("pruning" in best) != (args.name == "resnet18-p30"):
        parser.error(f"{args.run_dir} is {'a pruning' if 'pruning' in best else 'a training'} run; "
                     f"--name {args.name} takes {'a training' if args.name == 'resnet18' else 'a pruning'} run")
    if args.name == "resnet18-p30" and best["pruning"]["ratio"] != 0.3:
        parser.error(f"{args.run_dir} was pruned by {best['pruning']['ratio']}, not 0.3")
    train, val = load_train_val(args.data_dir)
    test = load_split("test", args.data_dir)

    shipped = inference_payload(best)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        candidate = Path(scratch) / target.checkpoint.name
        save_checkpoint(candidate, shipped)
        for split in (val, test):
            for tta in (False, True):
                report = evaluate_model(candidate, split, tta=tta)
                results[f"{split.name}_top1{'_tta' if tta else ''}"] = report["top1"]
                print(f"{split.name}{' (flip TTA)' if tta else ''}: top-1 {report['top1']:.4f}")
        fp32, int8 = Path(scratch) / "model.onnx", Path(scratch) / "model.int8.onnx"
        metadata = export_onnx(candidate, fp32).metadata  # calibrate with the model's own normalization
        reader = CifarCalibrationReader.from_training_split(train, mean=metadata.mean, std=metadata.std)
        quantize_onnx(fp32, int8, reader, val, log=print)
        for split in (val, test):
            results[f"int8_{split.name}_top1"] = evaluate_model(int8, split)["top1"]
            print(f"{split.name} int8: top-1 {results[f'int8_{split.name}_top1']:.4f}")
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
        **({"pruning": best["pruning"], "widths": best["widths"]} if "pruning" in best else {}),
        "hardware": hardware,
        "device": best.get("device"),
        "torch_version": best.get("torch_version"),
        "toolkit_version": best.get("toolkit_version"),
        "weights_dtype": "float16",
        "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(target.checkpoint, checkpoint_bytes)
    card["checkpoint_sha256"] = file_sha256(target.checkpoint)
    card["checkpoint_bytes"] = target.checkpoint.stat().st_size
    write_metrics(target.metrics, last["metrics"])
    atomic_write_bytes(target.card, (json.dumps(card, indent=2) + "\n").encode())
    print(f"wrote {target.checkpoint} ({card['checkpoint_bytes'] / 1e6:.1f} MB), {target.card}, {target.metrics}")


if __name__ == "__main__":
    main()
