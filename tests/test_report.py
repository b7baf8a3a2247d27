import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.cli import main
from resnet_edge.data import Split, load_sample
from resnet_edge.files import atomic_write_bytes
from resnet_edge.metrics import classification_report
from resnet_edge.report import confusion_from_logits, confusion_of_best
from resnet_edge.run_folder import load_run

from conftest import TINY_CONFIG

CHARTS = ("loss.png", "accuracy.png", "lr.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    # invoke() lets unexpected exceptions through; a user error ends in click's SystemExit(1).
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    image = Image.open(path)
    assert image.format == "PNG" and image.width > 0 and image.height > 0, path
    return image


def copy_run(run_dir: Path, target: Path) -> Path:
    """A private copy of the shared run (hard links: the tests replace files, never write into them)."""
    shutil.copytree(run_dir, target, copy_function=os.link)
    return target


@pytest.fixture(scope="module")
def sample_report(trained_run, tmp_path_factory):
    """``resnet-edge report`` on the session's sample run, no data options: the sample's val split by default."""
    out = tmp_path_factory.mktemp("report")
    result = invoke("report", trained_run, "--out", out)
    assert result.exit_code == 0, result.output
    return result, out


def test_report_writes_charts_confusion_and_summary(sample_report):
    result, out = sample_report
    written = [Path(line.removeprefix("wrote ")) for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert sorted(p.name for p in written) == sorted([*CHARTS, "confusion.png", "summary.md"])
    assert all(p.parent == out and p.is_file() for p in written)
    for name in (*CHARTS, "confusion.png"):
        image = assert_png(out / name)
        # A chart, not a blank canvas: lines, text and colours give many distinct pixel values.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_report_prints_a_short_summary(sample_report):
    result, _ = sample_report
    stdout = result.stdout
    assert "built-in sample" in stdout and "val split" in stdout
    epochs = TINY_CONFIG["epochs"]
    assert f"{epochs}/{epochs} epochs" in stdout
    assert re.search(r"best val top-1 \d+\.\d\d% at epoch \d", stdout)
    assert re.search(r"confusion matrix: best\.pt on 500 val images from built-in sample, top-1 \d+\.\d\d%", stdout)
    assert len([line for line in stdout.splitlines() if not line.startswith("wrote ")]) <= 4


def test_summary_states_the_run_and_embeds_the_charts(sample_report, trained_run):
    _, out = sample_report
    summary = (out / "summary.md").read_text()
    best = load_checkpoint(trained_run / "best.pt")
    epochs = TINY_CONFIG["epochs"]
    assert f"| best val top-1 | {best['val_top1']:.2%} at epoch {best['epoch']} (best.pt) |" in summary
    assert f"| epochs done / planned | {epochs} / {epochs} |" in summary
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert f"top-1 {records[-1]['val_acc']:.2%}" in summary
    assert f"{np.mean([r['img_per_s'] for r in records]):.0f} img/s" in summary
    assert f"| limit_train | {TINY_CONFIG['limit_train']} |" in summary
    assert best["torch_version"] in summary and str(best["hardware"]) in summary
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary)
    assert sorted(links) == sorted([*CHARTS, "confusion.png"])
    assert all((out / link).is_file() for link in links)


def test_confusion_of_hand_built_logits_has_true_classes_as_rows():
    names = ("a", "b", "c")
    labels = np.array([0, 0, 1, 2])
    logits = np.array([  # argmax: 0, 1, 1, 0
        [2.0, 1.0, 0.0],
        [0.5, 1.5, -1.0],
        [-1.0, 3.0, 0.0],
        [0.2, -0.3, 0.1],
    ])
    expected = [[1, 1, 0],  # a: one right, one taken for b
                [0, 1, 0],  # b: right
                [1, 0, 0]]  # c: taken for a
    report = classification_report(logits, labels, names)
    assert report["confusion"] == expected
    assert report["top1"] == 0.5 and report["images"] == 4
    assert report["per_class"] == {"a": 0.5, "b": 1.0, "c": 0.0}

    split = Split("val", np.zeros((4, 32, 32, 3), np.uint8), labels, "hand-built")
    confusion = confusion_from_logits(logits, split, names)
    assert confusion.counts.tolist() == expected and confusion.top1 == 0.5
    assert confusion.class_names == names and confusion.source == "hand-built" and confusion.images == 4

    # A class without images: an empty row and column, and no accuracy rather than 0.
    wider = np.concatenate([logits, np.full((4, 1), -10.0)], axis=1)
    report = classification_report(wider, labels, (*names, "d"))
    assert report["confusion"] == [[*row, 0] for row in expected] + [[0, 0, 0, 0]]
    assert report["per_class"] == {"a": 0.5, "b": 1.0, "c": 0.0, "d": None} and report["top1"] == 0.5


def test_confusion_of_best_counts_what_pytorch_predicts(trained_run):
    val = load_sample("val")
    split = Split("val", val.images[:100], val.labels[:100], val.source)
    confusion = confusion_of_best(load_run(trained_run), split)

    # The same 100 images through best.pt, normalized and counted here.
    model = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    x = (split.images.transpose(0, 3, 1, 2) / 255.0 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    with torch.no_grad():
        predicted = model(torch.from_numpy(x.astype(np.float32))).argmax(1).numpy()
    expected = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), np.int64)
    np.add.at(expected, (split.labels, predicted), 1)
    assert confusion.counts.tolist() == expected.tolist()
    assert confusion.top1 == (predicted == split.labels).mean()
    assert confusion.class_names == CLASS_NAMES and confusion.source == val.source


def test_default_folder_and_no_confusion(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    result = invoke("report", run, "--no-confusion")
    assert result.exit_code == 0, result.output
    out = run / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted([*CHARTS, "summary.md"])
    for name in CHARTS:
        assert_png(out / name)
    summary = (out / "summary.md").read_text()
    assert "confusion.png" not in summary and "Not computed" in summary
    assert "confusion matrix" not in result.stdout and "built-in sample: confusion" not in result.stdout


def test_unfinished_run_says_so(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    first_epoch = (run / "metrics.jsonl").read_text().splitlines()[0] + "\n"
    atomic_write_bytes(run / "metrics.jsonl", first_epoch.encode())  # replaces the link, not the shared file
    result = invoke("report", run, "--out", tmp_path / "out", "--no-confusion")
    assert result.exit_code == 0, result.output
    assert f"1/{TINY_CONFIG['epochs']} epochs" in result.stdout
    assert f"| epochs done / planned | 1 / {TINY_CONFIG['epochs']} (not finished" in (tmp_path / "out" / "summary.md").read_text()


def test_folders_that_are_not_runs_give_one_line_errors(trained_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("report", empty), "no metrics.jsonl in", str(empty), "'resnet-edge train'")

    (empty / "metrics.jsonl").write_text("")
    assert_one_line_error(invoke("report", empty), "metrics.jsonl holds no epoch records", "'resnet-edge train'")

    (empty / "metrics.jsonl").write_text('{"epoch": 1}\n')
    assert_one_line_error(invoke("report", empty), "metrics.jsonl line 1 lacks numeric lr", "'resnet-edge train'")

    (empty / "metrics.jsonl").write_bytes(b"\x80\x81 not json\n")
    assert_one_line_error(invoke("report", empty), "line 1 is not a JSON object")

    shutil.copy(trained_run / "metrics.jsonl", empty / "metrics.jsonl")
    assert_one_line_error(invoke("report", empty), f"no best.pt in {empty}", "'resnet-edge train'")
    assert not (empty / "report").exists()

    result = invoke("report", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_missing_data_names_no_confusion(trained_run, tmp_path, monkeypatch):
    run = copy_run(trained_run, tmp_path / "run")
    payload = load_checkpoint(run / "best.pt")
    payload["train_data"] = {**payload["train_data"], "source": str(tmp_path / "cifar-10-batches-py")}
    save_checkpoint(run / "best.pt", {k: v for k, v in payload.items() if k not in ("format", "format_version")})
    monkeypatch.setenv("RESNET_EDGE_DATA", str(tmp_path / "nowhere"))
    assert_one_line_error(invoke("report", run), "CIFAR-10 not found", "--no-confusion")
    assert not (run / "report").exists()


def test_missing_matplotlib_names_the_extra(tmp_path):
    # A fresh interpreter where importing matplotlib fails, as on an install without the [report] extra.
    code = ("import sys; sys.modules['matplotlib'] = None; from resnet_edge.cli import main; "
            f"main(['report', {str(tmp_path)!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: resnet-edge report needs the 'matplotlib' package")
    assert "pip install 'resnet-edge[report]'" in lines[0]


def test_help():
    result = invoke("report", "--help")
    assert result.exit_code == 0
    for text in ("RUN_DIR", "--out", "--no-confusion", "--data-dir", "--sample", "summary.md", "confusion.png"):
        assert text in result.stdout, text
    assert "report" in invoke("--help").stdout

