"""Training throughput of the trainer's step against a naive fp32 loop. Targets: ≥ 2.5× its img/s, data ≤ 10 %.

Measures, in one process, images per second of full training steps (forward,
backward, optimizer and scheduler step) of the same ResNet-18 built from the same
seed, with the same loss, Nesterov SGD and one-cycle schedule (``TrainConfig``):

  (a) naive: what a typical user writes. Images are stored once as normalized
      float32 NCHW; each step draws a random batch and, in a Python loop per
      image (as torchvision's ``RandomCrop(32, padding=4)`` and
      ``RandomHorizontalFlip`` would), zero-pads, crops a random 32×32 window and
      flips with probability 1/2, then stacks. Contiguous NCHW, float32, no
      autocast.
  (b) trainer: the step of ``resnet_edge.train``. uint8 NCHW images in memory,
      ``random_crop`` + ``random_flip`` on the whole batch, ``normalize``,
      channels_last and bf16 autocast when ``resolve_precision("auto", cpu)``
      picks bf16 (else fp32 NCHW, as the trainer would), SGD + scheduler step.
      Both paths call the trainer's own ``build_optimization`` and
      ``train_step``; (b) also its ``prepare_batch``. Left out: the progress bar
      and the running loss/accuracy sums (microseconds).

It prints the img/s of each (after warm-up), the ratio (b)/(a) (target ≥ 2.5)
and the share of each step spent preparing the batch (indexing, crop, flip,
normalize, layout; target for (b) ≤ 10 %), timed inside the timed steps: torch's
CPU ops are synchronous, so that is exactly what a step waits for its data. The
paths run in alternating rounds (a-b, then b-a, ...), so drift in clock speed or
background load hits both equally.

    python benchmarks/train_throughput.py [--batch-size 256] [--steps 10] [--rounds 3] [--warmup 3] [--threads N] [--json]

Data: the built-in 1,000-image sample, so no download. A default run is 33
steps per path, about 1.3 s per (b) step and 3 s per (a) step on a 2-core
AVX-512-BF16 CPU: about 2.5 minutes (earlier measurements there: (a) ≈ 83 img/s,
(b) ≈ 195 img/s). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_edge.augment import normalize_batch, to_nchw
from resnet_edge.cifar10 import IMAGE_SIZE, MEAN, STD
from resnet_edge.data import Split, load_sample
from resnet_edge.model import ResNet18
from resnet_edge.train import (
    CROP_PADDING,
    build_optimization,
    prepare_batch,
    resolve_precision,
    train_step,
    uses_channels_last,
)
from resnet_edge.train_config import TrainConfig

SPEEDUP_TARGET = 2.5
DATA_SHARE_TARGET = 0.10
CPU = torch.device("cpu")
Step = Callable[[], float]  # runs one training step; returns the seconds spent preparing its batch


def make_step(sample: Split, batch_size: int, total_steps: int, seed: int, naive: bool) -> tuple[Step, str]:
    """One training step of path (a) or (b), and a label saying what it runs."""
    config = TrainConfig()
    autocast_dtype = None if naive else resolve_precision(config.precision, CPU)
    memory_format = torch.channels_last if uses_channels_last(CPU, autocast_dtype) else torch.contiguous_format
    torch.manual_seed(seed)  # same initial weights on both paths
    model = ResNet18(zero_init_residual=config.zero_init_residual).to(memory_format=memory_format)
    optimizer, scheduler, scaler, criterion = build_optimization(model, config, total_steps, CPU, autocast_dtype)
    generator = torch.Generator().manual_seed(seed)
    uint8_nchw = to_nchw(torch.from_numpy(sample.images))
    labels = torch.from_numpy(sample.labels)
    floats = normalize_batch(uint8_nchw, MEAN, STD) if naive else None  # (a) keeps normalized float32, as a Dataset would

    def naive_batch(index: Tensor) -> Tensor:
        crops = []
        for i in index.tolist():  # per sample, as torchvision transforms run inside a Dataset
            image = F.pad(floats[i], (CROP_PADDING,) * 4)
            top, left = torch.randint(0, 2 * CROP_PADDING + 1, (2,), generator=generator).tolist()
            image = image[:, top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]
            if torch.rand(1, generator=generator).item() < 0.5:
                image = image.flip(2)
            crops.append(image)
        return torch.stack(crops)

    def step() -> float:
        start = time.perf_counter()
        index = torch.randperm(len(labels), generator=generator)[:batch_size]
        x = naive_batch(index) if naive else prepare_batch(uint8_nchw, index, generator, memory_format, MEAN, STD)
        y = labels[index]
        data_seconds = time.perf_counter() - start
        train_step(model, x, y, criterion, optimizer, scheduler, scaler, autocast_dtype)
        return data_seconds

    if naive:
        return step, "naive: fp32 NCHW, per-sample crop/flip"
    precision = {None: "fp32 NCHW", torch.bfloat16: "bf16 + channels_last"}[autocast_dtype]
    return step, f"trainer: {precision}, batch crop/flip"


def interleaved(steps: list[Step], batch_size: int, per_round: int, rounds: int, warmup: int) -> list[dict[str, Any]]:
    """img/s overall and per round, and the data share, for each step; rounds alternate their order."""
    for step in steps:
        for _ in range(warmup):
            step()
    total, data = [0.0] * len(steps), [0.0] * len(steps)
    round_rates: list[list[float]] = [[] for _ in steps]
    for round_index in range(rounds):
        order = range(len(steps)) if round_index % 2 == 0 else reversed(range(len(steps)))
        for which in order:
            started = time.perf_counter()
            for _ in range(per_round):
                data[which] += steps[which]()
            seconds = time.perf_counter() - started
            total[which] += seconds
            round_rates[which].append(per_round * batch_size / seconds)
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr)
    return [
        {"images_per_second": rounds * per_round * batch_size / total[i], "round_images_per_second": round_rates[i],
         "data_share": data[i] / total[i]}
        for i in range(len(steps))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default 256)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per path per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per path first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both models and data draws (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    sample = load_sample("train")
    if min(args.steps, args.rounds, 1 if args.threads is None else args.threads) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds and --threads must be at least 1, --warmup at least 0")
    if not 1 <= args.batch_size <= len(sample):
        parser.error(f"--batch-size must be 1 to {len(sample)} (the sample's size), got {args.batch_size}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    total_steps = args.warmup + args.rounds * args.steps
    naive, naive_label = make_step(sample, args.batch_size, total_steps, args.seed, naive=True)
    trainer, trainer_label = make_step(sample, args.batch_size, total_steps, args.seed, naive=False)
    a, b = interleaved([naive, trainer], args.batch_size, args.steps, args.rounds, args.warmup)
    speedup = b["images_per_second"] / a["images_per_second"]
    result = {
        "batch_size": args.batch_size, "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup": args.warmup, "naive": {"path": naive_label, **a},
        "trainer": {"path": trainer_label, **b}, "speedup": speedup, "speedup_target": SPEEDUP_TARGET,
        "data_share_target": DATA_SHARE_TARGET,
        "meets_targets": speedup >= SPEEDUP_TARGET and b["data_share"] <= DATA_SHARE_TARGET,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"ResNet-18 training steps on the built-in sample ({len(sample)} images), batch {args.batch_size}, "
          f"torch threads {result['threads']}, {args.rounds} rounds × {args.steps} steps per path "
          f"after {args.warmup} warm-up")
    for tag, label, r in (("(a)", naive_label, a), ("(b)", trainer_label, b)):
        rounds = ", ".join(f"{rate:.0f}" for rate in r["round_images_per_second"])
        print(f"{tag} {label:<46} : {r['images_per_second']:6.1f} img/s  (rounds {rounds})  "
              f"data {r['data_share']:.1%} of step")
    print(f"speed-up (b)/(a): {speedup:.2f}x; target >= {SPEEDUP_TARGET}: "
          f"{'met' if speedup >= SPEEDUP_TARGET else 'BELOW'}")
    print(f"data share of (b): {b['data_share']:.1%}; target <= {DATA_SHARE_TARGET:.0%}: "
          f"{'within' if b['data_share'] <= DATA_SHARE_TARGET else 'OVER'}")


if __name__ == "__main__":
    main()
