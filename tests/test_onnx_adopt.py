"""Adopting ONNX files exported elsewhere (``export.onnx_adopt``): real foreign files, no mocks.

The foreign files are our shipped reference weights exported here with ``torch.onnx.export`` the way someone
else would: foreign tensor names, once with a dynamic batch, once with a fixed batch of 1 and a hand-written
``view(x.size(0), -1)`` flatten at an old opset. Every expected answer comes from running those files as
given with onnxruntime here, fed by the test's own normalization.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from foreign_files import HandFlattened, torch_to_onnx
from independent import normalized
from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES
from resnet_edge.data import load_sample
from resnet_edge.errors import ExportError
from resnet_edge.export.onnx_adopt import adopt_onnx, is_onnx_file
from resnet_edge.reference import reference_checkpoint
from resnet_edge.runtime import Predictor

PREDICTED = 100  # images the Predictor classifies in each test (a full pass over the sample takes ~2.5 s)
FIXED_OPSET = 11  # below resnet-edge's minimum (13), so adoption must convert it


class Tiny(nn.Module):
    """A small conv net for the refusals; ``two_outputs`` also returns its features."""

    def __init__(self, two_outputs: bool = False) -> None:
        super().__init__()
        self.conv, self.fc, self.two_outputs = nn.Conv2d(3, 4, 3), nn.Linear(4, 10), two_outputs

    def forward(self, x: torch.Tensor):
        features = F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1)
        return (self.fc(features), features) if self.two_outputs else self.fc(features)


def run_as_given(path: Path, inputs: np.ndarray, one_by_one: bool = False) -> np.ndarray:
    """The file's first output, run here by onnxruntime under its own names (image by image if asked)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if one_by_one:
        return np.concatenate([session.run(None, {name: inputs[i:i + 1]})[0] for i in range(len(inputs))])
    return session.run(None, {name: inputs})[0]


def assert_same_logits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert (actual.argmax(1) == expected.argmax(1)).all()


@pytest.fixture(scope="module")
def sample():
    return load_sample("test")


@pytest.fixture(scope="module")
def sample_inputs(sample) -> np.ndarray:
    return normalized(sample.images)  # the test's own (x / 255 - mean) / std, float32 NCHW


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return model_from_checkpoint(load_checkpoint(reference_checkpoint()))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory, resnet) -> dict[str, Path]:
    """The foreign files, each exported once."""
    folder = tmp_path_factory.mktemp("foreign")
    return {
        "dynamic": torch_to_onnx(resnet, folder / "dynamic.onnx", torch.randn(2, 3, 32, 32)),
        "fixed": torch_to_onnx(HandFlattened(resnet), folder / "fixed.onnx", torch.randn(1, 3, 32, 32),
                               dynamic=False, opset=FIXED_OPSET),
        "imagenet": torch_to_onnx(Tiny(), folder / "imagenet.onnx", torch.randn(1, 3, 224, 224), dynamic=False),
        "two_outputs": torch_to_onnx(Tiny(two_outputs=True), folder / "two.onnx", torch.randn(2, 3, 32, 32),
                                     outputs=("out", "features")),
    }


@pytest.fixture(scope="module")
def expected(foreign, sample_inputs) -> dict[str, np.ndarray]:
    """Each ResNet file's logits on the first PREDICTED sample images, run as given (the fixed one image by image)."""
    return {"dynamic": run_as_given(foreign["dynamic"], sample_inputs[:PREDICTED]),
            "fixed": run_as_given(foreign["fixed"], sample_inputs[:PREDICTED], one_by_one=True)}


@pytest.fixture(scope="module")
def adopted(foreign, tmp_path_factory):
    """Both ResNet files adopted; the dynamic one through the sanity accuracy check (a full pass, ~2.5 s)."""
    folder = tmp_path_factory.mktemp("adopted")
    return {"dynamic": adopt_onnx(foreign["dynamic"], folder / "dynamic.onnx"),
            "fixed": adopt_onnx(foreign["fixed"], folder / "fixed.onnx", accuracy_check=False)}


def test_the_fixed_file_really_bakes_in_its_batch(foreign, sample_inputs):
    """Without a Reshape to a constant [1, -1] the fixed-batch test would prove nothing."""
    model = onnx.load(str(foreign["fixed"]))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    constants |= {node.output[0]: numpy_helper.to_array(node.attribute[0].t)
                  for node in model.graph.node if node.op_type == "Constant"}
    shapes = [constants.get(node.input[1]) for node in model.graph.node if node.op_type == "Reshape"]
    assert any(shape is not None and list(shape) == [1, -1] for shape in shapes)
    assert model.opset_import[0].version == FIXED_OPSET
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_as_given(foreign["fixed"], sample_inputs[:7])


@pytest.mark.parametrize("name", ["dynamic", "fixed"])
def test_adopted_file_computes_what_the_file_as_given_does(name, adopted, expected, sample_inputs):
    path = adopted[name].output
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 7):
        assert_same_logits(session.run(["logits"], {"input": sample_inputs[:batch]})[0], expected[name][:batch])
    opset = onnx.load(str(path)).opset_import[0].version
    assert opset == adopted[name].opset == (17 if name == "dynamic" else 13)


@pytest.mark.parametrize("name", ["dynamic", "fixed"])
def test_predictor_and_sanity_check_agree_with_the_file_as_given(name, adopted, expected, foreign, sample,
                                                                 reference_sample_predictions):
    predictor = Predictor(adopted[name].output)
    assert predictor.precision == "fp32" and predictor.class_names == CLASS_NAMES
    assert predictor.metadata.provenance == {"format": "onnx", "normalization": "default", "class_names": "default"}
    assert predictor.metadata.checkpoint_sha256 == hashlib.sha256(foreign[name].read_bytes()).hexdigest()
    assert (predictor.predict(sample.images[:PREDICTED]).class_ids == expected[name][:PREDICTED].argmax(1)).all()
    if name == "dynamic":  # the reference weights: the sanity check must score what the reference's export scores
        own_top1 = float((reference_sample_predictions == sample.labels).mean())
        assert own_top1 > 0.9
        assert adopted[name].sanity.top1 == own_top1 and adopted[name].sanity.images == len(sample.labels)


def test_raw_input_adoption_takes_pixels_and_a_foreign_pixel_model_is_adopted_as_one(foreign, expected, sample,
                                                                                       tmp_path):
    images, logits = sample.images[:PREDICTED], expected["dynamic"][:PREDICTED]
    raw = adopt_onnx(foreign["dynamic"], tmp_path / "raw.onnx", raw_input=True, accuracy_check=False)
    predictor = Predictor(raw.output)
    assert predictor.metadata.raw_input and predictor.session.get_inputs()[0].type == "tensor(uint8)"
    assert_same_logits(predictor.logits(images), logits)
    assert (predictor.predict(images).class_ids == logits.argmax(1)).all()

    # The same graph with its metadata stripped: a foreign file that takes uint8 NHWC pixels itself.
    model = onnx.load(str(raw.output))
    del model.metadata_props[:]
    pixel_model = tmp_path / "pixels.onnx"
    onnx.save(model, str(pixel_model))
    refused(pixel_model, tmp_path / "out.onnx", r"already takes uint8 pixels \('input' uint8 \(batch, 32, 32, 3\)\)",
            raw_input=True)
    adopted = Predictor(adopt_onnx(pixel_model, tmp_path / "out.onnx", accuracy_check=False).output)
    assert adopted.metadata.raw_input
    assert (adopted.predict(images).class_ids == logits.argmax(1)).all()


def test_a_renamed_file_is_judged_by_its_content(foreign, tmp_path):
    onnx_as_pt = tmp_path / "model.pt"
    shutil.copy(foreign["dynamic"], onnx_as_pt)
    checkpoint_as_onnx = tmp_path / "model.onnx"
    shutil.copy(reference_checkpoint(), checkpoint_as_onnx)
    assert is_onnx_file(onnx_as_pt)
    assert not is_onnx_file(checkpoint_as_onnx)
    assert not is_onnx_file(tmp_path / "missing.onnx")


def refused(source: Path, output: Path, match: str, **options) -> None:
    """``adopt_onnx`` refuses in one line and leaves ``output`` as it was (absent, or its bytes)."""
    before = output.read_bytes() if output.exists() else None
    with pytest.raises(ExportError, match=match) as caught:
        adopt_onnx(source, output, **options)
    assert "\n" not in str(caught.value)
    assert (output.read_bytes() if output.exists() else None) == before


def test_files_that_do_not_fit_are_refused(foreign, adopted, tmp_path):
    output = tmp_path / "out.onnx"
    refused(foreign["imagenet"], output, r"input 'x' float32 \(1, 3, 224, 224\); expected float32 \(N, 3, 32, 32\)")
    refused(foreign["two_outputs"], output, r"2 outputs \('out', 'features'\)")
    refused(adopted["dynamic"].output, output, "already a resnet-edge model")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00" * 100)
    refused(garbage, output, "cannot read .*garbage.onnx as ONNX")
    output.write_bytes(b"an earlier model")
    refused(foreign["dynamic"], output, "3 class names for a model with 10 outputs", class_names=["a", "b", "c"])
    refused(foreign["dynamic"], output, "opset 9 is not supported", opset=9)
