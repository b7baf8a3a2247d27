"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from resnet_edge.checkpoint import load_checkpoint

ARGS = ["--sample", "--limit-train", "192", "--batch-size", "64", "--epochs", "3", "--seed", "3", "--no-progress",
        "--device", "cpu"]
TIMEOUT = 300


def _train(out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "resnet_edge", "train", *ARGS, "--out", str(out_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_first_epoch(process: subprocess.Popen, metrics: Path) -> None:
    """Return once metrics.jsonl holds an epoch record (written after that epoch's last.pt); fail after TIMEOUT s."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().strip():
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before finishing an epoch: "
                                 f"{process.stdout.read()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no epoch finished within {TIMEOUT} s")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    straight = _train(tmp_path / "straight")
    output = straight.communicate(timeout=TIMEOUT)[0]
    assert straight.returncode == 0, output

    victim = _train(tmp_path / "killed")
    _wait_for_first_epoch(victim, tmp_path / "killed" / "metrics.jsonl")
    os.kill(victim.pid, signal.SIGKILL)  # the next epoch, which takes seconds, has just begun
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "training ended before the kill: nothing was interrupted"
    # Interrupted mid-run, whatever the timing: some epochs saved, not all, and the records agree with last.pt.
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"]
    assert 1 <= saved < 3, f"last.pt holds epoch {saved} of 3: the kill did not land mid-run"
    records = len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines())
    assert records in (saved - 1, saved)  # metrics.jsonl is written just after last.pt

    resumed = _train(tmp_path / "killed", "--resume")
    output = resumed.communicate(timeout=TIMEOUT)[0]
    assert resumed.returncode == 0, output
    assert "resuming" in output and f"at epoch {saved + 1}/3" in output

    expected = load_checkpoint(tmp_path / "straight" / "last.pt")
    actual = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert actual["epoch"] == expected["epoch"] == 3
    assert actual["ema_updates"] == expected["ema_updates"]
    for weights in ("model", "raw_model"):  # the weight average and the optimizer's own weights
        for name, tensor in expected[weights].items():
            assert torch.equal(tensor, actual[weights][name]), f"{weights} {name} differs after resume"
    for key, state in expected["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], actual["optimizer"]["state"][key]["momentum_buffer"])
    timing = ("img_per_s", "seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in expected["metrics"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in actual["metrics"]]
    assert (tmp_path / "killed" / "metrics.jsonl").read_text().count("\n") == 3
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
