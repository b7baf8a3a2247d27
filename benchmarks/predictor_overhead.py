"""What the Predictor adds to a bare onnxruntime call, at batch 1. Target: at most 10 %.

Measures, in one process on one machine and on the same onnxruntime session:

  (a) ``session.run`` on the input the model takes, prepared beforehand: an
      already normalized float32 ``(1, 3, 32, 32)`` batch, or for a model
      exported with ``--raw-input`` the uint8 ``(1, 32, 32, 3)`` pixels;
  (b) ``Predictor.predict`` on a uint8 ``(32, 32, 3)`` image: validation,
      normalization (unless the graph does it), the same ``session.run``,
      softmax and top-1.

and prints the p50 latency of each and ``p50(b) / p50(a) - 1`` as the
"Predictor overhead". Both paths share one session so that they differ only in
the predictor's own Python and numpy work; with two sessions, one session's
spinning worker threads would slow the other. The two are timed in alternating
rounds (a-b, then b-a, ...), so drift in clock speed or background load hits
both equally.

    python benchmarks/predictor_overhead.py MODEL.onnx [--iters N] [--threads N]

Without MODEL it exports a ResNet-18 with random weights (same graph and cost
as a trained one) to a temporary file; only that case needs torch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from resnet_edge.bench.passes import interleaved_timings
from resnet_edge.data import load_sample
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME
from resnet_edge.runtime.predictor import Predictor

TARGET = 0.10
ROUND = 20  # calls per path per round: long enough to stay in cache, short enough to interleave finely
WARMUP = 50


def export_random_resnet18(folder: Path) -> Path:
    """Write an untrained ResNet-18 with resnet-edge metadata; its latency equals a trained one's."""
    import torch

    from resnet_edge.cifar10 import CLASS_NAMES, IMAGE_SIZE, MEAN, STD
    from resnet_edge.export import model_to_onnx_bytes
    from resnet_edge.export.gates import attach_metadata
    from resnet_edge.metadata import ModelMetadata
    from resnet_edge.model import ResNet18

    torch.manual_seed(0)
    metadata = ModelMetadata(class_names=CLASS_NAMES, mean=MEAN, std=STD, image_size=IMAGE_SIZE)
    path = folder / "resnet18_random.onnx"
    path.write_bytes(attach_metadata(model_to_onnx_bytes(ResNet18()), metadata))
    return path


def measure(model: Path, iters: int, threads: int | None) -> None:
    predictor = Predictor(model, threads=threads)
    image = load_sample("test").images[0]
    model_input = predictor.preprocess(image)  # prepared once: (a) times onnxruntime alone
    session = predictor.session

    def bare() -> object:
        return session.run([OUTPUT_NAME], {INPUT_NAME: model_input})

    def full() -> object:
        return predictor.predict(image)

    timings = interleaved_timings([bare, full], iters, WARMUP, ROUND) * 1e3
    p50_bare, p50_full = np.percentile(timings, 50, axis=1)
    p90_bare, p90_full = np.percentile(timings, 90, axis=1)
    overhead = p50_full / p50_bare - 1
    print(f"model: {model} ({predictor.precision}, {model.stat().st_size / 1e6:.1f} MB), batch 1, "
          f"threads: {threads or 'onnxruntime default'}, {iters} timed calls each after {WARMUP} warm-up")
    kind = "raw uint8 input" if predictor.metadata.raw_input else "normalized float32 input"
    labels = [f"(a) session.run, {kind}", "(b) Predictor.predict, uint8 image"]
    width = max(map(len, labels))
    print(f"{labels[0]:<{width}} : p50 {p50_bare:.3f} ms  p90 {p90_bare:.3f} ms")
    print(f"{labels[1]:<{width}} : p50 {p50_full:.3f} ms  p90 {p90_full:.3f} ms")
    verdict = "within" if overhead <= TARGET else "OVER"
    print(f"Predictor overhead: {overhead:+.1%} ({(p50_full - p50_bare) * 1e3:+.0f} us per call); "
          f"target <= {TARGET:.0%}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="ONNX model; default: export a random ResNet-18")
    parser.add_argument("--iters", type=int, default=1000, help="timed calls per path (default 1000)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all cores)")
    args = parser.parse_args()
    if args.iters < 1:
        parser.error(f"--iters must be at least 1, got {args.iters}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.model is not None:
        try:
            measure(args.model, args.iters, args.threads)
        except (OSError, ValueError) as exc:  # a missing file or a model without resnet-edge metadata
            parser.exit(1, f"error: {exc}\n")
        return
    with tempfile.TemporaryDirectory(prefix="resnet-edge-bench-") as folder:
        model = export_random_resnet18(Path(folder))
        measure(model, args.iters, args.threads)


if __name__ == "__main__":
    main()
