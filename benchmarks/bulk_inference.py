"""What Ray Data costs over one Predictor, on the test split. Target: (b) at least 0.85x (a) images/s.

On this machine, same int8 model, the 10,000 test images held as a uint8 numpy array:

  (a) one ``Predictor`` with every core as onnxruntime threads, ``predict`` over batches of 256;
  (b) ``predict_dataset`` on a local Ray cluster (``ray.init(num_cpus=<cores>)``), the array handed to
      Ray in blocks of the batch size, every prediction pulled back to the driver.

Ray's start-up is reported apart and not counted: ``ray.init`` (the cluster), and the fixed cost of each
run (the actor pool: a process per actor, each loading the model; planning; the first batch's latency).
(b) runs over the N test images and over them twice (2N); its images/s is N / (t(2N) - t(N)), the rate a
long run settles at, the fixed cost 2 t(N) - t(2N). Its end-to-end rate over N, start-up included, is
printed beside it. (a) runs before and after the Ray rows and keeps its better pass, so that
(a) is not flattered by a quiet moment. Then the same for other batch sizes and actor counts (actors x
threads per actor = cores), so that the table shows where the ratio goes.

    python benchmarks/bulk_inference.py [MODEL.int8.onnx] [--data-dir D] [--json]

Without MODEL it exports the shipped reference and quantizes it with ``resnet-edge quantize``'s
defaults (calibration on 512 training images; needs torch). Needs ``pip install 'resnet-edge[ray]'``
and the full data set ($RESNET_EDGE_DATA or --data-dir). About 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from resnet_edge.data import load_split, load_train_val
from resnet_edge.runtime.predictor import Predictor
from resnet_edge.runtime.session import usable_cores

TARGET = 0.85
BATCH = 256
SWEEP_BATCHES = (64, 256, 1024)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def int8_reference(work: Path, data_dir: str | None) -> Path:
    from resnet_edge.calibration import CifarCalibrationReader
    from resnet_edge.export import export_onnx
    from resnet_edge.export.quantize import quantize_onnx
    from resnet_edge.reference import reference_checkpoint

    fp32, int8 = work / "reference.onnx", work / "reference.int8.onnx"
    export_onnx(reference_checkpoint(), fp32)
    train, val = load_train_val(data_dir)
    quantize_onnx(fp32, int8, CifarCalibrationReader.from_training_split(train), val, log=log)
    return int8


def single_predictor(model: Path, images: np.ndarray, batch: int) -> float:
    """Images/s of one Predictor with every core, after one warm-up batch."""
    with Predictor(model) as predictor:
        predictor.predict(images[:batch])
        begun = time.perf_counter()
        for start in range(0, len(images), batch):
            predictor.predict(images[start:start + batch])
        return len(images) / (time.perf_counter() - begun)


def ray_run(model: Path, images: np.ndarray, batch: int, actors: int) -> tuple[float, float]:
    """One predict_dataset run over ``images``: seconds to the first batch and to the last."""
    from resnet_edge.runtime.distributed import predict_dataset
    from resnet_edge.runtime.ray_inputs import tensor_dataset

    predictions = predict_dataset(tensor_dataset(images, batch), str(model), batch_size=batch, concurrency=actors,
                                  num_cpus_per_actor=max(1, usable_cores() // actors))
    begun = time.perf_counter()
    first, seen = None, 0
    for out in predictions.iter_batches(batch_size=None, batch_format="numpy"):
        seen += len(out["class_id"])
        first = first or time.perf_counter() - begun
    assert seen == len(images), f"{seen} rows came back for {len(images)} images"
    return first, time.perf_counter() - begun


def ray_dataset(model: Path, images: np.ndarray, batch: int, actors: int) -> dict[str, float]:
    """predict_dataset's rate with its start-up cancelled out: runs over N and 2N images, N / (t2N - tN)."""
    first, once = ray_run(model, images, batch, actors)
    _, twice = ray_run(model, np.concatenate([images, images]), batch, actors)
    return {"first_batch_s": first, "startup_s": max(0.0, 2 * once - twice), "steady": len(images) / (twice - once),
            "end_to_end": len(images) / once}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, help="an int8 model [default: the quantized reference]")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 [default: $RESNET_EDGE_DATA]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import ray

    images = load_split("test", args.data_dir).images
    cores = usable_cores()
    with tempfile.TemporaryDirectory() as work:
        model = args.model or int8_reference(Path(work), args.data_dir)
        begun = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_init_s = time.perf_counter() - begun
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars, context.print_on_execution_start = False, False
        logging.getLogger("ray").setLevel(logging.ERROR)
        rows = []
        for batch in SWEEP_BATCHES:
            for actors in sorted({1, cores}):
                log(f"batch {batch}, {actors} actor(s)")
                single = single_predictor(model, images, batch)
                run = ray_dataset(model, images, batch, actors)
                single = max(single, single_predictor(model, images, batch))
                rows.append({"batch": batch, "actors": actors, "threads_per_actor": max(1, cores // actors),
                             "single_img_s": single, **run, "ratio": run["steady"] / single})
        ray.shutdown()
    headline = max((r for r in rows if r["batch"] == BATCH), key=lambda r: r["ratio"])
    if args.json:
        print(json.dumps({"model": str(model), "cores": cores, "ray_init_s": ray_init_s, "rows": rows,
                          "headline": headline, "target": TARGET}, indent=2))
        return
    print(f"model: {Path(model).name}, {len(images)} test images, {cores} cores ({os.cpu_count()} visible); "
          f"ray.init: {ray_init_s:.1f} s (not counted)")
    print(f"{'batch':>5} {'actors':>6} {'thr/actor':>9} {'(a) img/s':>10} {'(b) img/s':>10} {'(b)/(a)':>8} "
          f"{'(b) end-to-end':>15} {'start-up s':>11} {'first batch s':>14}")
    for r in rows:
        print(f"{r['batch']:>5} {r['actors']:>6} {r['threads_per_actor']:>9} {r['single_img_s']:>10.0f} "
              f"{r['steady']:>10.0f} {r['ratio']:>8.2f} {r['end_to_end']:>15.0f} {r['startup_s']:>11.2f} "
              f"{r['first_batch_s']:>14.2f}")
    verdict = "meets" if headline["ratio"] >= TARGET else "MISSES"
    print(f"batch {BATCH}: (b) {headline['steady']:.0f} img/s over (a) {headline['single_img_s']:.0f} img/s = "
          f"{headline['ratio']:.2f}x with {headline['actors']} actor(s); {verdict} the target of {TARGET}x")


if __name__ == "__main__":
    main()
