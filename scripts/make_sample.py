"""Cut the built-in sample from the real CIFAR-10: class-balanced train/val/test subsets.

    python scripts/make_sample.py --data-dir ../shared/cifar10

Writes ``resnet_edge/sample/cifar10_sample.npz`` (uint8 images, int64 labels,
and the source index of every image) and ``cifar10_sample.json`` beside it with
the same indices, the counts and the md5 of the npz. Selection is deterministic:
the first N images of each class, in the official order, from each split
(train and val as ``resnet_edge.data`` defines them, so the sample never mixes
validation or test images into its training part).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from resnet_edge.cifar10 import CLASS_NAMES, NUM_CLASSES
from resnet_edge.data import SAMPLE_PATH, load_split, val_indices

PER_CLASS = {"train": 100, "val": 50, "test": 100}


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(NUM_CLASSES)]
    return np.sort(np.concatenate(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=SAMPLE_PATH)
    args = parser.parse_args()

    trainval = load_split("trainval", args.data_dir)
    test = load_split("test", args.data_dir)
    held_out = val_indices(trainval.labels)
    train_idx = np.setdiff1d(np.arange(len(trainval)), held_out, assume_unique=True)
    # Indices into the official 50,000 training images (train, val) or 10,000 test images.
    source_indices = {
        "train": train_idx[first_per_class(trainval.labels[train_idx], PER_CLASS["train"])],
        "val": held_out[first_per_class(trainval.labels[held_out], PER_CLASS["val"])],
        "test": first_per_class(test.labels, PER_CLASS["test"]),
    }
    arrays = {}
    for split, idx in source_indices.items():
        full = test if split == "test" else trainval
        arrays[f"{split}_images"] = full.images[idx]
        arrays[f"{split}_labels"] = full.labels[idx]
        arrays[f"{split}_source_indices"] = idx.astype(np.int64)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    digest = hashlib.md5(args.output.read_bytes()).hexdigest()
    manifest = {
        "description": "class-balanced CIFAR-10 subsets cut by scripts/make_sample.py",
        "class_names": list(CLASS_NAMES),
        "per_class": PER_CLASS,
        "source": {
            "train": "official training images (data_batch_1..5), index 0..49999",
            "val": "official training images, validation hold-out (last 500 per class)",
            "test": "official test images (test_batch), index 0..9999",
        },
        "npz_md5": digest,
        "source_indices": {split: idx.tolist() for split, idx in source_indices.items()},
    }
    args.output.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB, md5 {digest})")


if __name__ == "__main__":
    main()
