"""The examples/ apps run as users run them: a fresh Python process, a real model, real image files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from resnet_edge.data import load_sample

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_classify_folder_prints_one_line_per_image(onnx_model, tmp_path):
    from PIL import Image

    sample = load_sample("test")
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(sample.images[i]).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    done = subprocess.run([sys.executable, str(EXAMPLES / "classify_folder.py"), str(onnx_model), str(folder),
                           "--top-k", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"img{i}.png" for i in range(5)]
    assert all(len(line.split(":")[1].split(",")) == 2 for line in lines)


def test_classify_folder_explains_an_empty_folder(onnx_model, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "classify_folder.py"), str(onnx_model), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no images" in done.stderr and "Traceback" not in done.stderr
