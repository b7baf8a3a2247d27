"""torchrun with 2 CPU processes (gloo): same weights on both ranks, one set of files."""

import os
import signal
import subprocess
import sys

from resnet_edge.checkpoint import load_checkpoint

TIMEOUT = 600


def test_two_process_ddp_on_cpu(tmp_path):
    out_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "resnet_edge", "train", "--sample", "--limit-train", "128", "--batch-size", "64", "--epochs", "2",
        "--device", "cpu", "--out", str(out_dir), "--no-progress",
    ]
    # A session of its own, so a timeout can stop torchrun's workers too.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, stdout + stderr
    lines = stdout.splitlines()
    # Rank 0 alone logs: each epoch once, and each epoch's cross-rank weight check passed.
    assert sum(line.startswith("epoch   1/2") for line in lines) == 1
    assert sum(line.startswith("epoch   2/2") for line in lines) == 1
    assert sum("weights identical on all 2 processes" in line for line in lines) == 2
    assert sum(line.startswith("done:") for line in lines) == 1
    assert "× 2 processes" in stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    payload = load_checkpoint(out_dir / "last.pt")
    assert payload["world_size"] == 2 and payload["epoch"] == 2
    assert len(payload["rng"]["augment"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]
