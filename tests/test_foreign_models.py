"""Bring your own model: ResNet-18 files from other code bases, built here from real code with the reference weights.

Each file format is made the way its code base makes it (torchvision's own ``resnet18``, a from-scratch
kuangliu/pytorch-cifar class, a Lightning ``.ckpt`` dict, a timm ``train.py`` dict with its ``argparse``
namespace, a whole pickled module), holding the shipped reference model's weights. Before any export the test
proves, in PyTorch, that the foreign model computes the reference's logits: the file really is the reference
in another layout. The export must then give the reference's predictions on the built-in test sample exactly.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from foreign_files import (
    KuangliuResNet,
    cifar_torchvision_resnet18,
    kuangliu_names,
    torchvision_names,
    write_formats,
    write_model_def,
    write_pickled_module,
)
from independent import normalized
from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.cli import main
from resnet_edge.data import load_sample
from resnet_edge.errors import CheckpointError, ExportError
from resnet_edge.export import export_module, export_onnx, load_foreign_checkpoint
from resnet_edge.export.model_file import UnsafeLoadWarning
from resnet_edge.reference import reference_checkpoint


@pytest.fixture(scope="module")
def reference(reference_sample_predictions):
    """The reference ResNet18 (fp32), its state_dict, and its export's predictions on the built-in test sample."""
    model = model_from_checkpoint(load_checkpoint(reference_checkpoint()))
    return model, model.state_dict(), reference_sample_predictions


def holding(model: nn.Module, weights: dict[str, torch.Tensor], reference_model: nn.Module) -> nn.Module:
    """``model`` loaded strictly with ``weights``, after checking it computes the reference's logits."""
    model.load_state_dict(weights, strict=True)
    model.eval()
    x = torch.from_numpy(normalized(load_sample("test").images[:16]))
    with torch.inference_mode():
        assert torch.allclose(model(x), reference_model(x), atol=1e-5), "the test built a different model"
    return model


@pytest.fixture(scope="module")
def kuangliu(reference):
    model, weights, _ = reference
    return holding(KuangliuResNet(), kuangliu_names(weights), model)


@pytest.fixture(scope="module")
def tv_resnet18(reference):
    model, weights, _ = reference
    return holding(cifar_torchvision_resnet18(), torchvision_names(weights), model)


@pytest.fixture(scope="module")
def files(reference, kuangliu, tv_resnet18, tmp_path_factory):
    """One file per format, each as its code base writes it (``foreign_files.write_formats``)."""
    return write_formats(tmp_path_factory.mktemp("foreign"), reference[1])


def session_predictions(path, count: int = 1000) -> np.ndarray:
    """Class ids of an ONNX file on the first ``count`` images of the built-in test sample, run and fed here."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = normalized(load_sample("test").images[:count])
    return np.concatenate([session.run(["logits"], {"input": images[i:i + 250]})[0].argmax(1)
                           for i in range(0, count, 250)])


def assert_same_graph(path, reference_path) -> None:
    """The same nodes and the same tensors, bit for bit: the same function, so the same predictions."""
    ours, theirs = onnx.load(str(reference_path)).graph, onnx.load(str(path)).graph
    assert [(n.op_type, list(n.input), list(n.output)) for n in ours.node] == \
        [(n.op_type, list(n.input), list(n.output)) for n in theirs.node]
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in theirs.initializer}
    assert len(tensors) == len(ours.initializer)
    for tensor in ours.initializer:
        assert np.array_equal(onnx.numpy_helper.to_array(tensor), tensors[tensor.name]), tensor.name


@pytest.mark.parametrize("name, options, layout", [
    ("kuangliu", {}, "kuangliu"),
    ("torchvision", {}, "torchvision"),
    ("lightning", {}, "kuangliu"),
    ("timm", {"ema": True}, "torchvision"),
])
def test_each_format_exports_the_reference_exactly(files, reference_onnx, tmp_path, name, options, layout):
    # The sanity check (3 s each) is left to the tests below: an export with the reference's graph scores what
    # the reference scores.
    result = export_onnx(files[name], tmp_path / f"{name}.onnx", accuracy_check=False, **options)
    assert result.parity.passed and result.metadata.provenance["layout"] == layout
    assert result.metadata.provenance["normalization"] == result.metadata.provenance["class_names"] == "default"
    assert_same_graph(result.output, reference_onnx)


@pytest.mark.parametrize("name, layout, prefix", [
    ("bare", "resnet-edge", ""), ("compiled_ddp", "resnet-edge", "module._orig_mod."),
    ("kuangliu", "kuangliu", "module."), ("torchvision", "torchvision", ""),
])
def test_every_layout_and_prefix_loads_the_reference_weights(files, reference, name, layout, prefix):
    from resnet_edge.export import load_model

    loaded = load_model(files[name])
    assert (loaded.provenance["layout"], loaded.provenance["prefix"]) == (layout, prefix)
    _, weights, _ = reference
    model = load_foreign_checkpoint(files[name])
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_model_def_and_pickled_module_export_their_own_forward(reference, tmp_path):
    _, weights, expected = reference
    source, weights_file = write_model_def(tmp_path, weights)
    result = export_onnx(weights_file, tmp_path / "mynet.onnx", model_def=f"{source}:Net", accuracy_check=False)
    assert result.metadata.provenance["model_def"] == "mynet.py:Net" and result.metadata.provenance["prefix"] == "net."
    assert np.array_equal(session_predictions(result.output), expected)

    pickled = tmp_path / "whole.pt"
    write_pickled_module(pickled, weights)
    with pytest.raises(CheckpointError, match="whole pickled model.*KuangliuResNet.*state_dict.*--allow-pickle"):
        export_onnx(pickled, tmp_path / "whole.onnx")
    assert not (tmp_path / "whole.onnx").exists()
    with pytest.warns(UnsafeLoadWarning, match="weights_only=False"):
        result = export_onnx(pickled, tmp_path / "whole.onnx", allow_pickle=True, accuracy_check=False)
    assert result.metadata.provenance["format"].endswith("KuangliuResNet")
    assert np.array_equal(session_predictions(result.output, 250), expected[:250])  # its own forward, the same answers


def test_export_module_from_python(kuangliu, reference, tmp_path):
    _, _, expected = reference
    # The model's outputs named in reverse: the sanity check must match predictions to labels by name.
    names = [name.upper() for name in CLASS_NAMES]
    reversed_head = KuangliuResNet()
    reversed_head.load_state_dict({k: v.flip(0) if k.startswith("linear.") else v
                                   for k, v in kuangliu.state_dict().items()})
    result = export_module(reversed_head, tmp_path / "nb.onnx", mean=MEAN, std=STD, class_names=names[::-1])
    assert result.metadata.class_names == tuple(names[::-1])
    assert result.sanity.top1 == (expected == load_sample("test").labels).mean()
    with pytest.raises(ExportError, match="9 class names for a model with 10 outputs"):
        export_module(kuangliu, tmp_path / "nine.onnx", class_names=CLASS_NAMES[:9])


def test_refusals_name_what_was_found(files, reference, tmp_path):
    _, weights, _ = reference
    output = tmp_path / "out.onnx"
    output.write_bytes(b"previous model")
    cases = {
        "resnet34": (cifar_torchvision_resnet18(torchvision.models.resnet34).state_dict(),
                     "not a CIFAR ResNet-18: found blocks per stage 3-4-6-3"),
        "resnet50": (cifar_torchvision_resnet18(torchvision.models.resnet50).state_dict(), "bottleneck blocks"),
        "imagenet_stem": (torchvision.models.resnet18(num_classes=10).state_dict(), "7×7 stem"),
        "missing": ({k: v for k, v in weights.items() if k != "layer3.1.bn2.running_var"},
                    "missing layer3.1.bn2.running_var"),
        "extra": ({**weights, "fc2.weight": torch.zeros(10, 512)}, "unexpected fc2.weight"),
        "shape": ({**weights, "layer2.0.conv2.weight": torch.zeros(128, 128, 1, 1)},
                  r"layer2.0.conv2.weight has shape \(128, 128, 1, 1\), expected \(128, 128, 3, 3\)"),
    }
    for name, (state, message) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save(state, path)
        with pytest.raises(ExportError, match=message):
            export_onnx(path, output)
    with pytest.raises(ExportError, match="2 values .* expected 3"):
        export_onnx(files["bare"], output, mean=(0.5, 0.5), std=(0.2, 0.2))
    with pytest.raises(ExportError, match="sanity check failed.*normalization.*probably wrong.*'state_dict_ema'.*--ema"):
        export_onnx(files["timm"], output)  # the untrained state_dict, not --ema
    with pytest.raises(ExportError, match="--ema: .* bare state_dict"):
        export_onnx(files["bare"], output, ema=True)
    assert output.read_bytes() == b"previous model"


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_reports_sources_and_refuses_in_one_line(files, reference, tmp_path):
    runner = CliRunner()
    out = tmp_path / "k.onnx"
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(CLASS_NAMES) + "\n")
    result = runner.invoke(main, ["export", str(files["kuangliu"]), "-o", str(out), "--class-names", str(names),
                                  "--mean", ",".join(map(str, MEAN)), "--std", ",".join(map(str, STD))])
    assert result.exit_code == 0, result.output
    assert "kuangliu/pytorch-cifar checkpoint, weights 'net', kuangliu names, prefix 'module.'" in result.output
    assert "(as given)" in result.output and "sanity check: top-1 93.6 %" in result.output
    pickled = tmp_path / "whole.pt"
    write_pickled_module(pickled, reference[1])
    for args, fragments in [
        ([str(pickled)], ("whole pickled model", "--allow-pickle")),
        ([str(files["bare"]), "--mean", "0.5,0.5"], ("--mean", "expected 3")),
        ([str(files["bare"]), "--mean", "125,123,114", "--std", "0.2,0.2,0.2"], ("[0, 1] pixel scale",)),
        ([str(files["bare"]), "--class-names", "cat,dog"], ("2 class names for a model with 10 outputs",)),
        ([str(files["bare"]), "--class-names", "missing.txt"], ("class names file not found",)),
        ([str(files["bare"]), "--model-def", "nowhere.py:Net"], ("--model-def file not found",)),
    ]:
        assert_one_line_error(runner.invoke(main, ["export", *args, "-o", str(tmp_path / "x.onnx")]), *fragments)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning reaches the user as a line on stderr, not a Python warning
        result = runner.invoke(main, ["export", str(pickled), "-o", str(tmp_path / "p.onnx"), "--allow-pickle",
                                      "--no-accuracy-check"])
    assert result.exit_code == 0, result.output
    assert "warning: unpickling" in result.output and "sanity check: skipped (--no-accuracy-check)" in result.output
