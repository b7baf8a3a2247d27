import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from resnet_edge import __version__
from resnet_edge.cifar10 import CLASS_NAMES
from resnet_edge.cli import main
from resnet_edge.data import load_sample
from independent import normalized

COMMANDS = ["train", "prune", "export", "quantize", "evaluate", "predict", "bench", "demo", "report"]


@pytest.fixture()
def runner():
    return CliRunner()


def invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    # invoke() lets unexpected exceptions through; a user error ends in click's SystemExit(1).
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_scores(report: dict, logits: np.ndarray, labels: np.ndarray) -> None:
    """``report``'s top-1, per-class accuracy and confusion (rows true, columns predicted) are those of ``logits``."""
    predicted = logits.argmax(1)
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    assert report["top1"] == (predicted == labels).mean()
    assert report["confusion"] == confusion.tolist()
    assert report["per_class"] == {name: (predicted[labels == i] == i).mean() for i, name in enumerate(CLASS_NAMES)}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(runner, command):
    result = invoke(runner, *([command] if command else []), "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_version(runner):
    assert __version__ in invoke(runner, "--version").output


def test_train_export_evaluate_predict_bench(runner, tmp_path):
    run_dir = tmp_path / "run"
    result = invoke(runner, "train", "--sample", "--out", run_dir, "--epochs", 1, "--batch-size", 64,
                    "--limit-train", 128, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "epoch   1/1" in result.output and (run_dir / "best.pt").is_file()

    model = tmp_path / "model.onnx"
    result = invoke(runner, "export", run_dir / "best.pt", "--output", model, "--json")
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["parity"]["passed"] and len(exported["parity"]["cases"]) == 6
    assert model.is_file()

    # Every evaluation below is checked against logits computed here, outside the code under test: an
    # onnxruntime session of our own on images normalized here and on their mirrors (val: 500 images, quick).
    val = load_sample("val")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    plain = session.run(["logits"], {"input": normalized(val.images)})[0]
    mirror = session.run(["logits"], {"input": normalized(val.images[:, :, ::-1])})[0]

    result = invoke(runner, "evaluate", model, "--sample", "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["images"], report["split"], report["engine"], report["tta"]) == (500, "val", "onnxruntime", False)
    assert_scores(report, plain, val.labels)
    assert report["images_per_second"] > 0

    result = invoke(runner, "evaluate", model, "--sample", "--split", "val", "--tta", "--json")
    assert result.exit_code == 0, result.output
    flipped = json.loads(result.stdout)
    assert flipped["tta"] is True
    assert_scores(flipped, (plain + mirror) / 2, val.labels)  # the mean of each image's and its mirror's logits

    result = invoke(runner, "evaluate", run_dir / "best.pt", "--sample", "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    checkpoint = json.loads(result.stdout)
    assert (checkpoint["images"], checkpoint["engine"], checkpoint["provider"]) == (500, "torch", None)
    # PyTorch's answers are those of onnxruntime on the export (their logits differ by ~1e-7, this model's
    # top-2 margins by more than 1e-4), so the session's logits serve as the other engine here too.
    assert_scores(checkpoint, plain, val.labels)

    from PIL import Image

    images = load_sample("test").images[:3]
    png = tmp_path / "plane.png"
    Image.fromarray(images[0]).save(png)
    npy = tmp_path / "batch.npy"
    np.save(npy, images)
    result = invoke(runner, "predict", model, png, npy, "--top-k", 2, "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["index"] for p in predictions] == [None, 0, 1, 2]
    assert all(len(p["top_k"]) == 2 for p in predictions)
    assert predictions[0]["class_id"] == predictions[1]["class_id"]
    table = invoke(runner, "predict", model, png)
    assert table.exit_code == 0 and str(png) in table.output

    result = invoke(runner, "bench", model, "--iters", 5, "--warmup", 1, "--json")
    assert result.exit_code == 0, result.output
    [stats] = json.loads(result.stdout)["results"]
    assert {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "images_per_second", "peak_rss_mb",
            "size_bytes"} <= set(stats)
    assert stats["engine"] == "onnxruntime" and stats["p50_ratio"] == 1.0 and stats["peak_rss_mb"] > 10
    table = invoke(runner, "bench", model, "--iters", 5, "--batch-size", 4, "--threads", 1)
    assert table.exit_code == 0 and "p50 ms" in table.output

    # A second train into the same folder must not clobber the run.
    result = invoke(runner, "train", "--sample", "--out", run_dir, "--epochs", 1)
    assert_one_line_error(result, "already holds a run", "--resume")
    result = invoke(runner, "train", "--sample", "--out", run_dir, "--epochs", 3, "--resume")
    assert_one_line_error(result, "--epochs 3 differs from the saved run's 1")


def test_user_errors_are_one_line(runner, tmp_path, onnx_model):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"junk")
    assert_one_line_error(invoke(runner, "export", garbage, "-o", tmp_path / "m.onnx"), "cannot read checkpoint")
    assert not (tmp_path / "m.onnx").exists()

    assert_one_line_error(invoke(runner, "evaluate", onnx_model, "--data-dir", tmp_path / "nowhere"),
                          "CIFAR-10 not found", "data_batch_1")

    bad = tmp_path / "small.npy"
    np.save(bad, np.zeros((28, 28, 3), np.uint8))
    assert_one_line_error(invoke(runner, "predict", onnx_model, bad), str(bad), "28x28", "--resize")
    assert invoke(runner, "predict", onnx_model, bad, "--resize").exit_code == 0

    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"junk")
    assert_one_line_error(invoke(runner, "predict", not_onnx, bad), "cannot load")
    assert_one_line_error(invoke(runner, "evaluate", garbage, "--sample"), "cannot read checkpoint")

    result = invoke(runner, "bench", tmp_path / "missing.onnx")
    assert result.exit_code == 2 and "does not exist" in result.output
    assert_one_line_error(invoke(runner, "bench", onnx_model, "--engine", "torch"), "engine torch runs .pt")
    result = invoke(runner, "bench", onnx_model, "--batch-size", "1,x")
    assert result.exit_code == 2 and "positive integers" in result.output


def test_predict_and_evaluate_take_execution_providers(runner, tmp_path, onnx_model, trained_run):
    npy = tmp_path / "batch.npy"
    np.save(npy, load_sample("test").images[:4])
    default = invoke(runner, "predict", onnx_model, npy, "--json")
    on_cpu = invoke(runner, "predict", onnx_model, npy, "--providers", "cpu", "--json")  # short name, any case
    assert on_cpu.exit_code == 0 and json.loads(on_cpu.stdout) == json.loads(default.stdout)
    refused = invoke(runner, "predict", onnx_model, npy, "--providers", "CPU,NoSuch")
    assert refused.exit_code == 2 and "NoSuch not available" in refused.output
    assert "available: " in refused.output and "CPUExecutionProvider" in refused.output

    result = invoke(runner, "evaluate", onnx_model, "--sample", "--providers", "CPU", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["images"], report["engine"], report["provider"]) == (1000, "onnxruntime", "CPUExecutionProvider")
    text = invoke(runner, "evaluate", onnx_model, "--sample", "--providers", "CPU")
    assert f"{onnx_model} · onnxruntime · 1000 test images from built-in sample" in text.output
    assert f"top-1 {report['top1']:.2%}" in text.output and "airplane" in text.output
    assert_one_line_error(invoke(runner, "evaluate", trained_run / "best.pt", "--sample", "--providers", "CPU"),
                          "execution providers apply to .onnx models", "best.pt runs on PyTorch")


def test_evaluate_on_the_full_validation_split(runner, full_data_dir, onnx_model, monkeypatch):
    monkeypatch.setenv("RESNET_EDGE_DATA", str(full_data_dir))
    result = invoke(runner, "evaluate", onnx_model, "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 2000 and report["split"] == "val"


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "resnet_edge", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "resnet-edge" in result.stdout


def test_demo_trains_exports_evaluates_predicts_and_benches(runner, tmp_path):
    result = invoke(runner, "demo", "--out", tmp_path, "--train-epochs", 1, "--no-progress")
    assert result.exit_code == 0, result.output
    for stage in ("train", "export + parity", "quantize int8", "evaluate (sample test)", "predict", "bench"):
        assert f"\n{stage} " in result.output
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.int8.onnx").is_file()


def test_demo_uses_the_reference_model(runner, tmp_path):
    result = invoke(runner, "demo", "--out", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "\nreference model " in result.output and "\ntrain " not in result.output
    assert "reference model shipped in the package" in result.output
    # The pruned reference is the bench table's third row, beside the reference's fp32 and int8.
    bench = result.output[result.output.index("== 6/6"):]
    assert [line.split()[0] for line in bench.splitlines()[2:5]] == ["fp32", "int8", "resnet18-p30"]
    assert (tmp_path / "resnet18-p30" / "model.int8.onnx").is_file()
