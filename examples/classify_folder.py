"""Embed the resnet-edge predictor in an application: load a model once, classify every image in a folder.

    python examples/classify_folder.py MODEL.onnx FOLDER [--top-k 3] [--threads N] [--resize]

MODEL.onnx is any model from ``resnet-edge export`` (fp32, or ``--raw-input``) or
``resnet-edge quantize`` (int8); the predictor reads its input layout,
normalization and class names from the file. Needs only numpy, onnxruntime and
Pillow (``pip install 'resnet-edge[images]'``), not torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_edge.errors import ResnetEdgeError
from resnet_edge.runtime import Predictor
from resnet_edge.runtime.images import IMAGE_SUFFIXES, image_files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resize", action="store_true", help="resize images that are not 32x32 instead of refusing")
    args = parser.parse_args()

    files = image_files(args.folder) if args.folder.is_dir() else []
    if not files:
        print(f"error: no images ({', '.join(IMAGE_SUFFIXES)}) in {args.folder}", file=sys.stderr)
        return 1
    try:
        # Load once: the session and its thread pool are the expensive part; calls are cheap and thread-safe.
        predictor = Predictor(args.model, threads=args.threads)
        # One call for the whole folder: the predictor batches (and chunks) it and keeps the files' order.
        predictions = predictor.predict(files, top_k=args.top_k, resize=args.resize)
    except (OSError, ValueError, ResnetEdgeError) as exc:  # a missing model or extra, an unreadable image
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, names, probabilities in zip(files, predictions.top_k_names, predictions.top_k_probabilities):
        ranked = ", ".join(f"{name} {p:.2f}" for name, p in zip(names, probabilities))
        print(f"{path.name}: {ranked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
