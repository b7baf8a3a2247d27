"""quantize, predict and bench work on the light install: in processes where importing torch fails.

A folder on PYTHONPATH holds ``torch`` and ``torchvision`` packages that log the attempt and raise ImportError,
so they shadow the real ones in every process started with this environment, bench's worker processes
included. The ONNX model comes from the test process, which has torch. Each command must succeed with real
outputs, checked here against the test process's own Predictor, and must not even try to import torch (the
log stays empty): a caught ImportError would hide a torch dependency the light install lacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_edge.data import load_sample
from resnet_edge.runtime import Predictor
from resnet_edge.runtime.session import read_metadata

BLOCKED = ("torch", "torchvision")
BLOCKER = '''import os, sys
with open(os.environ["RESNET_EDGE_TEST_IMPORT_LOG"], "a") as log:
    log.write("{name} " + " ".join(sys.argv) + "\\n")
raise ImportError("{name} is blocked for this test")
'''


@pytest.fixture(scope="module")
def blocking_folder(tmp_path_factory):
    """A folder whose ``torch`` and ``torchvision`` packages log the attempt and raise ImportError."""
    folder = tmp_path_factory.mktemp("no-torch")
    for name in BLOCKED:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(BLOCKER.format(name=name))
    return folder


@pytest.fixture()
def without_torch(blocking_folder, tmp_path):
    """(an environment in which torch and torchvision raise ImportError, this test's log of the attempts)."""
    log = tmp_path / "import-attempts.log"
    env = dict(os.environ, RESNET_EDGE_TEST_IMPORT_LOG=str(log))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocking_folder), os.environ.get("PYTHONPATH")]))
    return env, log


def run(env, *args, cwd):
    return subprocess.run([sys.executable, *args], check=False, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def attempts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_the_block_makes_importing_torch_fail(without_torch, tmp_path):
    env, log = without_torch
    for name in BLOCKED:
        blocked = run(env, "-c", f"import {name}", cwd=tmp_path)
        assert blocked.returncode != 0 and f"ImportError: {name} is blocked for this test" in blocked.stderr
    assert [line.split()[0] for line in attempts(log)] == list(BLOCKED)
    log.unlink()
    assert run(dict(os.environ), "-c", "import torch", cwd=tmp_path).returncode == 0  # the block, not the venv


def test_quantize_writes_an_int8_model(without_torch, reference_onnx, tmp_path):
    env, log = without_torch
    output = tmp_path / "model.int8.onnx"
    result = run(env, "-m", "resnet_edge", "quantize", str(reference_onnx), "--sample", "-o", str(output),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert attempts(log) == []
    assert read_metadata(output).precision == "int8"
    import onnx

    ops = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # int8 in the graph, not only in the metadata
    images = load_sample("val").images[:16]
    fp32, int8 = Predictor(reference_onnx).predict(images), Predictor(output).predict(images)
    assert np.mean(fp32.class_ids == int8.class_ids) >= 0.8  # a working int8 model, not a broken file


def test_predict_gives_the_class_the_test_process_gives(without_torch, reference_onnx, tmp_path):
    env, log = without_torch
    image = tmp_path / "0.png"
    Image.fromarray(load_sample("test").images[0]).save(image)
    result = run(env, "-m", "resnet_edge", "predict", str(reference_onnx), str(image), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert attempts(log) == []
    (prediction,) = json.loads(result.stdout)["predictions"]
    expected = Predictor(reference_onnx).predict(image)
    assert prediction["class_id"] == int(expected.class_ids[0])
    assert prediction["class_name"] == expected.class_names[0]


def test_bench_measures_a_row_and_its_worker_inherits_the_block(without_torch, reference_onnx, tmp_path):
    env, log = without_torch
    result = run(env, "-m", "resnet_edge", "bench", str(reference_onnx), "--iters", "5", "--warmup", "1",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert attempts(log) == []
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(reference_onnx.name)]
    assert len(rows) == 1 and rows[0][1:3] == ["onnxruntime", "fp32"], result.stdout

    # The torch engine needs torch in bench's worker process: that process, too, must find it blocked.
    from resnet_edge.reference import reference_checkpoint

    torch_row = run(env, "-m", "resnet_edge", "bench", str(reference_checkpoint()), "--iters", "1", "--warmup", "0",
                    cwd=tmp_path)
    assert torch_row.returncode == 1 and "torch is blocked for this test" in torch_row.stderr, torch_row.stderr
    assert any(line.startswith("torch ") and "worker" in line for line in attempts(log)), attempts(log)
