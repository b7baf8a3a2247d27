"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import torch

from resnet_edge.checkpoint import load_checkpoint

ARGS = ["--sample", "--limit-train", "192", "--batch-size", "64", "--epochs", "3", "--seed", "3", "--no-progress",
        "--device", "cpu"]
TIMEOUT = 300


def _train(out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "resnet_edge", "train", *ARGS, "--out", str(out_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_line(process: subprocess.Popen, prefix: str) -> list[str]:
    """Lines the process printed up to the first starting with ``prefix``; fails after TIMEOUT seconds."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, f"training exited early: {''.join(seen)}"
            continue
        seen.append(line)
        if line.startswith(prefix):
            return seen
    process.kill()
    raise AssertionError(f"no line starting with {prefix!r} within {TIMEOUT} s: {''.join(seen)}")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    straight = _train(tmp_path / "straight")
    output = straight.communicate(timeout=TIMEOUT)[0]
    assert straight.returncode == 0, output

    victim = _train(tmp_path / "killed")
    _wait_for_line(victim, "epoch   1/3")  # printed after epoch 1 is checkpointed
    time.sleep(0.2)  # well inside epoch 2, which takes seconds
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 1
    assert len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()) == 1

    resumed = _train(tmp_path / "killed", "--resume")
    output = resumed.communicate(timeout=TIMEOUT)[0]
    assert resumed.returncode == 0, output
    assert "resuming" in output and "at epoch 2/3" in output

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
