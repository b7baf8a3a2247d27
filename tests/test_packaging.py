import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_FILES = (
    "resnet_edge/reference/resnet18_cifar10.pt",
    "resnet_edge/reference/run.json",
    "resnet_edge/reference/metrics.jsonl",
    "resnet_edge/sample/cifar10_sample.npz",
    "resnet_edge/sample/cifar10_sample.json",
)


@pytest.mark.parametrize(
    "statement",
    [
        "import resnet_edge.runtime",
        "import resnet_edge.calibration",
        "from resnet_edge.runtime import Predictor",
        "import resnet_edge.cli",  # --help, predict and bench work without the [train] extra
        "import resnet_edge.runtime.distributed, resnet_edge.runtime.ray_inputs",  # ray only when they run
    ],
)
def test_light_modules_never_import_torch(statement):
    code = f"{statement}; import sys; assert not {{'torch', 'ray'}} & set(sys.modules), 'torch or ray was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_top_level_folders_install_as_subpackages(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "*.onnx"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("resnet_edge-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    for expected in ("resnet_edge/__init__.py", "resnet_edge/runtime/predictor.py", "resnet_edge/export/onnx_export.py",
                     "resnet_edge/calibration/reader.py", "resnet_edge/cli/__init__.py"):
        assert expected in names, expected
    # The demo and the light install need the reference model and the sample: whole, byte for byte.
    for data_file in DATA_FILES:
        assert data_file in names, f"{data_file} is not in the wheel"
        source = ROOT / data_file
        assert archive.getinfo(data_file).file_size == source.stat().st_size, data_file
        assert archive.read(data_file) == source.read_bytes(), data_file
    top_level = {name.split("/")[0] for name in names}
    assert not top_level & {"runtime", "export", "calibration", "tests", "benchmarks", "scripts"}, top_level
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist")]
    base = [line for line in requires if "extra ==" not in line]
    assert sorted(line.split()[1].split(">")[0].split("=")[0] for line in base) == ["click", "numpy", "onnxruntime"]
