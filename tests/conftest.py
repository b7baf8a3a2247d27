"""Shared fixtures: real data, a briefly trained run and its ONNX export (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet_edge.data import DATA_ENV_VAR

TINY_CONFIG = dict(epochs=2, batch_size=64, lr=0.05, limit_train=256, seed=0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the full data set, directly or through another fixture, as ``full_data``.

    ``pytest -m "not full_data"`` then runs what needs no download; ``-m full_data`` only those tests.
    """
    for item in items:
        if "full_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full CIFAR-10 set, read through the same setting users have ($RESNET_EDGE_DATA)."""
    value = os.environ.get(DATA_ENV_VAR)
    if not value:
        pytest.skip(f"needs the full CIFAR-10 set: set {DATA_ENV_VAR} to the cifar-10-batches-py folder")
    return Path(value)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder after 2 short epochs on 256 sample images (last.pt, best.pt, metrics.jsonl)."""
    from resnet_edge.data import load_sample
    from resnet_edge.train import train
    from resnet_edge.train_config import TrainConfig

    run_dir = tmp_path_factory.mktemp("run")
    train(TrainConfig(**TINY_CONFIG), load_sample("train"), load_sample("val"), run_dir, progress=False,
          log=lambda line: None)
    return run_dir


@pytest.fixture(scope="session")
def onnx_model(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run's best.pt exported to ONNX (parity-checked)."""
    from resnet_edge.export import export_onnx

    output = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(trained_run / "best.pt", output)
    return output


@pytest.fixture(scope="session")
def reference_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped reference checkpoint exported to fp32 ONNX (a real, accurate model for int8 tests)."""
    from resnet_edge.export import export_onnx
    from resnet_edge.reference import reference_checkpoint

    output = tmp_path_factory.mktemp("reference") / "reference.onnx"
    export_onnx(reference_checkpoint(), output)
    return output


@pytest.fixture(scope="session")
def reference_sample_predictions(reference_onnx: Path):
    """The reference export's class ids on the built-in test sample, run by onnxruntime and normalized here."""
    import numpy as np
    import onnxruntime as ort

    from independent import normalized
    from resnet_edge.data import load_sample

    session = ort.InferenceSession(str(reference_onnx), providers=["CPUExecutionProvider"])
    images = normalized(load_sample("test").images)
    return np.concatenate([session.run(["logits"], {"input": images[i:i + 250]})[0].argmax(1)
                           for i in range(0, len(images), 250)])


@pytest.fixture(scope="session")
def reference_int8(reference_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    """The reference model quantized with default settings, calibrated and gated on the built-in sample."""
    from resnet_edge.calibration import CifarCalibrationReader
    from resnet_edge.data import load_sample
    from resnet_edge.export.quantize import quantize_onnx

    output = tmp_path_factory.mktemp("int8") / "reference.int8.onnx"
    reader = CifarCalibrationReader.from_training_split(load_sample("train"), size=512)
    return quantize_onnx(reference_onnx, output, reader, load_sample("val"), log=lambda line: None)
