"""Bring your own model, measured: the reference weights in every foreign format, exported, quantized, scored on test.

Each format is written as its code base writes it (``tests/foreign_files.py``: kuangliu/pytorch-cifar,
torchvision, PyTorch Lightning, timm with ``--ema``, a bare state_dict, a DDP + ``torch.compile`` state_dict,
``--model-def``, a pickled module with ``--allow-pickle``, and an ONNX file exported elsewhere with a fixed
batch of 1 at opset 11, which is adopted), holding the shipped reference model's
weights. Every file then goes the user's way: ``export`` (parity and sanity checks), ``quantize`` with the
default settings (calibrated on the training split, gated on val), and top-1 on the full 10,000-image test
split for fp32 and int8 through the ``Predictor``. Target: each fp32 within 0.05 points of the reference's
93.55 %, each int8 within 0.3 points of it.

    RESNET_EDGE_DATA=../shared/cifar10 python benchmarks/foreign_formats.py [--formats kuangliu,timm]

About a minute per format on two cores (the int8 gate and the test split dominate).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the format writers the tests use

from foreign_files import write_foreign_onnx, write_formats, write_model_def, write_pickled_module  # noqa: E402

from resnet_edge.calibration import CifarCalibrationReader  # noqa: E402
from resnet_edge.checkpoint import load_checkpoint  # noqa: E402
from resnet_edge.cli.table import format_table  # noqa: E402
from resnet_edge.data import load_split, load_train_val  # noqa: E402
from resnet_edge.export import export_onnx  # noqa: E402
from resnet_edge.export.deployment import describe_provenance  # noqa: E402
from resnet_edge.export.quantize import quantize_onnx  # noqa: E402
from resnet_edge.hardware import this_cpu  # noqa: E402
from resnet_edge.reference import reference_card, reference_checkpoint  # noqa: E402
from resnet_edge.runtime import Predictor  # noqa: E402

FORMATS = ("kuangliu", "torchvision", "lightning", "timm", "bare", "compiled_ddp", "model_def", "pickled", "onnx")


def write_all(folder: Path) -> dict[str, tuple[Path, dict]]:
    """Each format's file and the export options it needs."""
    weights = {k: v.float() for k, v in load_checkpoint(reference_checkpoint())["model"].items()}
    files = {name: (path, {}) for name, path in write_formats(folder, weights).items()}
    files["timm"] = (files["timm"][0], {"ema": True})
    source, weights_file = write_model_def(folder, weights)
    files["model_def"] = (weights_file, {"model_def": f"{source}:Net"})
    write_pickled_module(folder / "pickled.pt", weights)
    files["pickled"] = (folder / "pickled.pt", {"allow_pickle": True})
    files["onnx"] = (write_foreign_onnx(folder / "foreign.onnx", weights), {})
    return files


def top1(model: Path, split) -> float:
    with Predictor(model) as predictor:
        return float((predictor.logits(split.images).argmax(1) == split.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    names = [name for name in args.formats.split(",") if name]
    train, val = load_train_val(None, False)
    test = load_split("test", None, False)
    reader = CifarCalibrationReader.from_training_split(train)
    print(f"{this_cpu().describe()}; reference test top-1 {100 * reference_card()['test_top1']:.2f} %", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = write_all(folder)
        for name in names:
            path, options = files[name]
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # --allow-pickle's warning: the file was written just above
                exported = export_onnx(path, folder / f"{name}.onnx", **options)
            int8 = folder / f"{name}.int8.onnx"
            reader.rewind()
            quantize_onnx(exported.output, int8, reader, val, log=lambda line: None)
            fp32_top1, int8_top1 = top1(exported.output, test), top1(int8, test)
            rows.append((name, describe_provenance(dict(exported.metadata.provenance)),
                         f"{100 * exported.sanity.top1:.1f} %" if exported.sanity else "skipped",
                         f"{100 * fp32_top1:.2f} %", f"{100 * int8_top1:.2f} %",
                         f"{time.perf_counter() - start:.0f} s"))
            print(format_table(["format", "read as", "sample top-1", "test fp32", "test int8", "time"], rows[-1:]),
                  flush=True)
    print()
    print(format_table(["format", "read as", "sample top-1", "test fp32", "test int8", "time"], rows))


if __name__ == "__main__":
    main()
