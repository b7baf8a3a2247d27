import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_edge.augment import alternating_flips, cutout, normalize_batch, random_crop, random_flip
from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import Split, load_sample
from resnet_edge.errors import CheckpointError, ResnetEdgeError
from resnet_edge.files import atomic_write
from resnet_edge.normalization import normalize as numpy_normalize
from resnet_edge.ema import WeightAverage
from resnet_edge.model import ResNet18
from resnet_edge.torch_inference import torch_logits
from resnet_edge.train import one_cycle, resolve_precision, train, uses_channels_last
from resnet_edge.train_config import TrainConfig, saved_config

from conftest import TINY_CONFIG

QUIET = dict(progress=False, log=lambda line: None)


@pytest.fixture(scope="module")
def sample():
    val = load_sample("val")
    return load_sample("train"), Split("val", val.images[:100], val.labels[:100], val.source)


def test_metrics_and_checkpoints_are_written(trained_run):
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert set(record) >= {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "img_per_s", "seconds"}
    payload = load_checkpoint(trained_run / "last.pt")
    assert set(payload) >= {"model", "optimizer", "scheduler", "epoch", "rng", "config", "normalization",
                            "class_names"}
    assert payload["epoch"] == 2
    assert payload["class_names"] == list(CLASS_NAMES)
    assert payload["normalization"] == {"mean": list(MEAN), "std": list(STD)}
    assert payload["config"]["limit_train"] == TINY_CONFIG["limit_train"]
    best = load_checkpoint(trained_run / "best.pt")
    assert best["val_top1"] == max(r["val_acc"] for r in records)


def test_checkpoint_round_trip_restores_the_weights_the_trainer_validated(trained_run):
    # The trainer validated the weights it held in memory at the end of the last epoch and wrote their
    # loss and top-1 to metrics.jsonl. The same measurement of last.pt, reloaded, must give the same numbers:
    # a lost BatchNorm statistic, a rounded weight or the optimizer's weights in place of the average would not.
    record = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[-1])
    payload = load_checkpoint(trained_run / "last.pt")
    assert payload["epoch"] == record["epoch"] == TINY_CONFIG["epochs"]
    device = torch.device("cpu")
    autocast = resolve_precision(payload["config"]["precision"], device)
    channels_last = uses_channels_last(device, autocast)
    model = model_from_checkpoint(payload)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # as the trainer holds it, so the arithmetic matches
    val = load_sample("val")  # what the trainer validated on (conftest's trained_run)
    logits = torch_logits(model, val.images, MEAN, STD, autocast_dtype=autocast, channels_last=channels_last)
    loss = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(val.labels)))
    assert (logits.argmax(1).numpy() == val.labels).mean() == record["val_acc"]
    # Exactly: the same weights through the same arithmetic give the same bits (fp16-rounded weights move
    # this loss by ~1e-6, the raw weights in place of the average by ~3e-3).
    assert loss == record["val_loss"]


def test_loss_falls_on_a_tiny_subset(sample, tmp_path):
    config = TrainConfig(epochs=10, batch_size=32, lr=0.05, limit_train=64, label_smoothing=0.0)
    train(config, *sample, tmp_path, **QUIET)
    losses = [json.loads(line)["train_loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.8 * losses[0], losses


class _Stop(Exception):
    pass


def _stop_after_first_epoch(line: str) -> None:
    if line.startswith("epoch   1/"):
        raise _Stop


def test_resume_continues_the_same_run(sample, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, limit_train=96)
    train(config, *sample, tmp_path / "straight", **QUIET)

    interrupted = tmp_path / "interrupted"
    with pytest.raises(_Stop):
        train(config, *sample, interrupted, progress=False, log=_stop_after_first_epoch)
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 1
    train(config, *sample, interrupted, resume=True, **QUIET)

    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(interrupted / "last.pt")
    assert resumed["epoch"] == 2
    for name, tensor in straight["model"].items():
        assert torch.allclose(tensor.float(), resumed["model"][name].float(), atol=1e-6), name
    assert [r["val_acc"] for r in straight["metrics"]] == [r["val_acc"] for r in resumed["metrics"]]


def test_existing_run_needs_resume(trained_run, sample):
    with pytest.raises(ResnetEdgeError, match="already holds a run"):
        train(TrainConfig(**TINY_CONFIG), *sample, trained_run, **QUIET)


def test_resume_refuses_a_different_schedule(trained_run, sample):
    config = replace(TrainConfig(**TINY_CONFIG), epochs=5)
    with pytest.raises(ResnetEdgeError, match="--epochs 5 differs from the saved run's 2"):
        train(config, *sample, trained_run, resume=True, explicit_options={"epochs"}, **QUIET)


def test_resume_refuses_another_training_split(trained_run, sample):
    train_split, val_split = sample
    smaller = Split("train", train_split.images[:200], train_split.labels[:200], train_split.source)
    with pytest.raises(ResnetEdgeError, match="trained on 256 images, this data gives 200"):
        train(TrainConfig(**TINY_CONFIG), smaller, val_split, trained_run, resume=True, **QUIET)


def test_completed_run_resumes_to_nothing(trained_run, sample):
    before = (trained_run / "last.pt").stat().st_mtime_ns
    train(TrainConfig(**TINY_CONFIG), *sample, trained_run, resume=True, **QUIET)
    assert (trained_run / "last.pt").stat().st_mtime_ns == before


def test_invalid_config_names_the_option():
    with pytest.raises(ResnetEdgeError, match="invalid training option lr=-1"):
        TrainConfig(lr=-1)


def test_one_cycle_warms_up_then_anneals_to_zero():
    factor = one_cycle(total_steps=100, warmup_fraction=0.2)
    values = [factor(step) for step in range(101)]
    assert values[0] == pytest.approx(1 / 20)
    assert max(values) == 1.0 and values.index(1.0) == 19
    assert values[100] == 0.0
    assert all(a >= b for a, b in zip(values[19:], values[20:]))


def test_batch_augmentation_crops_and_flips_whole_batches():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    cropped = random_crop(images, 4, generator)
    assert cropped.shape == images.shape and cropped.dtype == torch.uint8
    # Every crop is a shifted window of the zero-padded image.
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(8):
        windows = [padded[i, :, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(cropped[i], w) for w in windows)
    flipped = random_flip(images, generator)
    same = [torch.equal(flipped[i], images[i]) for i in range(64)]
    mirrored = [torch.equal(flipped[i], images[i].flip(2)) for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 54


def test_cutout_blanks_one_clipped_square_per_image():
    images = torch.ones(256, 3, 32, 32)
    holes = cutout(images, 12, torch.Generator().manual_seed(0)) == 0
    assert torch.equal(holes[:, 0], holes[:, 1]) and torch.equal(holes[:, 0], holes[:, 2])
    areas = holes[:, 0].sum(dim=(1, 2))
    assert areas.max() == 144 and areas.min() >= 36  # a 12x12 square, clipped by at most half on each axis
    rows, cols = holes[:, 0].any(2).sum(1), holes[:, 0].any(1).sum(1)
    assert torch.equal(areas, rows * cols)  # one rectangle each


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    base = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.5
    even, odd = alternating_flips(base, 0), alternating_flips(base, 1)
    assert torch.equal(even, alternating_flips(base, 2)) and torch.equal(even ^ odd, torch.ones(1000, dtype=torch.bool))
    assert 400 < int(even.sum()) < 600


def test_weight_average_tracks_the_weights_and_warms_up():
    torch.manual_seed(0)
    model = ResNet18()
    initial = next(model.parameters()).detach().clone()
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model)  # the first update's decay is min(0.9, 1/10) = 0.1
    averaged = next(average.module.parameters())
    assert torch.allclose(averaged, initial + 0.9, atol=1e-6)
    assert not averaged.requires_grad and average.updates == 1
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_runs_saved_before_new_settings_resume_with_them_off():
    config = saved_config({"epochs": 3})
    assert (config.ema_decay, config.cutout, config.alternate_flips) == (0.0, 0, False)


@pytest.mark.parametrize("mean, std", [(MEAN, STD), ((0.5, 0.25, 0.125), (0.2, 0.3, 0.4))])
def test_torch_and_numpy_normalization_compute_the_formula(mean, std):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    # (x / 255 - mean) / std in float64, written out here rather than taken from the code under test.
    expected = (images.transpose(0, 3, 1, 2) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    from_numpy = numpy_normalize(images, mean, std)
    from_torch = normalize_batch(torch.from_numpy(images).permute(0, 3, 1, 2), mean, std).numpy()
    assert from_numpy.dtype == from_torch.dtype == np.float32
    np.testing.assert_allclose(from_numpy, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_torch, expected, rtol=0, atol=1e-5)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")

    def fail(handle):
        handle.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a resnet-edge checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": "resnet-edge-checkpoint", "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_fp16_weights_load_back_as_fp32(trained_run, tmp_path):
    payload = load_checkpoint(trained_run / "best.pt")
    payload["model"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["model"].items()}
    payload = {k: v for k, v in payload.items() if k not in ("format", "format_version")}
    save_checkpoint(tmp_path / "half.pt", payload)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "half.pt"))
    assert all(p.dtype == torch.float32 for p in model.parameters())
