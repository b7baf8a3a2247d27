import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from resnet_edge import __version__
from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import load_sample
from resnet_edge.errors import CheckpointError, ExportError
from resnet_edge.export import check_parity, export_onnx, model_to_onnx_bytes
from resnet_edge.export import parity as parity_module
from resnet_edge.export.gates import parity_images
from resnet_edge.files import file_sha256
from resnet_edge.metadata import (
    KEY_CHECKPOINT_SHA256,
    KEY_CLASS_NAMES,
    KEY_MEAN,
    KEY_STD,
    KEY_TOOLKIT_VERSION,
    KEY_VAL_TOP1,
    ModelMetadata,
)
from resnet_edge.model import ResNet18
from independent import normalized


@pytest.fixture(scope="module")
def random_model():
    """An untrained ResNet-18 with non-trivial BatchNorm statistics, held in memory (eval mode)."""
    torch.manual_seed(1)
    model = ResNet18()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def random_checkpoint(random_model, tmp_path_factory):
    """A checkpoint of ``random_model``."""
    path = tmp_path_factory.mktemp("random") / "random.pt"
    save_checkpoint(path, {"model": random_model.state_dict(), "class_names": list(CLASS_NAMES),
                           "normalization": {"mean": list(MEAN), "std": list(STD)}})
    return path


def assert_onnx_file_computes_the_model(onnx_path, model: torch.nn.Module, batches) -> None:
    """onnxruntime on the written file against ``model`` run here, batch by batch.

    Each batch passes when max |Δlogit| <= 1e-4 × max(1, max |PyTorch logit|) and every argmax agrees.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for name, batch in batches:
        with torch.no_grad():
            expected = model.eval()(torch.from_numpy(batch)).numpy()
        (actual,) = session.run(["logits"], {"input": batch})
        assert actual.shape == expected.shape == (len(batch), len(CLASS_NAMES)), name
        diff, tolerance = np.abs(actual - expected).max(), 1e-4 * max(1.0, np.abs(expected).max())
        assert diff <= tolerance, f"{name}: max |Δlogit| {diff:.3e} > {tolerance:.3e}"
        assert np.array_equal(actual.argmax(1), expected.argmax(1)), name


def parity_batches() -> list[tuple[str, np.ndarray]]:
    """Real test images at batch 1 and 64 and standard-normal inputs at batch 7 (another seed than the exporter's)."""
    real = normalized(load_sample("test").images[:64])
    noise = np.random.default_rng(2024).standard_normal((7, 3, 32, 32), dtype=np.float32)
    return [("real images, batch 1", real[:1]), ("real images, batch 64", real), ("random inputs, batch 7", noise)]


def assert_report_covers_the_cases(report) -> None:
    assert {case.batch_size for case in report.cases} == {1, 7, 64}
    assert {case.name.split(",")[0] for case in report.cases} == {"real images", "random inputs"}


def test_export_of_random_weights_matches_pytorch(random_model, random_checkpoint, tmp_path):
    result = export_onnx(random_checkpoint, tmp_path / "random.onnx")
    assert_report_covers_the_cases(result.parity)
    # The reference is the model held in memory here, not the checkpoint reader's or the exporter's copy.
    assert_onnx_file_computes_the_model(tmp_path / "random.onnx", random_model, parity_batches())


def test_export_of_trained_model_matches_pytorch(trained_run, onnx_model):
    model = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    assert_onnx_file_computes_the_model(onnx_model, model, parity_batches())


def test_graph_interface_and_dynamic_batch(onnx_model):
    proto = onnx.load(str(onnx_model))
    onnx.checker.check_model(proto, full_check=True)
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert graph_input.name == "input" and graph_output.name == "logits"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = graph_input.type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "batch" and [d.dim_value for d in in_dims[1:]] == [3, 32, 32]
    out_dims = graph_output.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch" and out_dims[1].dim_value == 10
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 130):
        out = session.run(None, {"input": np.zeros((batch, 3, 32, 32), np.float32)})[0]
        assert out.shape == (batch, 10)


def test_metadata_carries_everything_the_runtime_needs(trained_run, onnx_model):
    props = {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props}
    metadata = ModelMetadata.from_props(props)
    assert metadata.class_names == CLASS_NAMES
    assert metadata.mean == MEAN and metadata.std == STD
    assert metadata.input_layout == "NCHW" and metadata.image_size == 32 and metadata.precision == "fp32"
    assert props[KEY_CHECKPOINT_SHA256] == file_sha256(trained_run / "best.pt")
    assert props[KEY_TOOLKIT_VERSION] == __version__
    assert float(props[KEY_VAL_TOP1]) == load_checkpoint(trained_run / "best.pt")["val_top1"]
    assert {KEY_CLASS_NAMES, KEY_MEAN, KEY_STD} <= set(props)


def test_parity_failure_writes_nothing_and_keeps_the_old_file(random_checkpoint, tmp_path, monkeypatch):
    output = tmp_path / "model.onnx"
    output.write_bytes(b"previous model")
    # An impossible tolerance stands in for an exporter that produced a wrong graph.
    monkeypatch.setattr(parity_module, "RELATIVE_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="does not match PyTorch") as info:
        export_onnx(random_checkpoint, output)
    assert "nothing written" in str(info.value)
    assert output.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_parity_detects_a_different_model(random_checkpoint):
    exported = model_to_onnx_bytes(model_from_checkpoint(load_checkpoint(random_checkpoint)))
    other = ResNet18().eval()
    report = check_parity(other, exported, parity_images(MEAN, STD))
    assert not report.passed and report.failures()


def test_bad_checkpoint_and_opset_are_refused(tmp_path, random_checkpoint):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*garbage.pt"):
        export_onnx(garbage, tmp_path / "out.onnx")
    with pytest.raises(ExportError, match="opset 9 is not supported"):
        export_onnx(random_checkpoint, tmp_path / "out.onnx", opset=9)
    assert not (tmp_path / "out.onnx").exists()
