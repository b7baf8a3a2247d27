"""int8 quantization of the reference model: valid ONNX, metadata kept, accuracy gated, fallback, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from resnet_edge.calibration import CifarCalibrationReader
from resnet_edge.cli import main
from resnet_edge.data import load_sample
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.export.cpu_features import cpu_int8_support
from resnet_edge.export.qdq import DEFAULT_METHOD, settings_for_cpu
from resnet_edge.export.quantize import AccuracyGateError, quantize_onnx
from resnet_edge.metadata import KEY_CALIBRATION, KEY_INT8_ACCURACY, KEY_PRECISION, KEY_QUANTIZATION
from resnet_edge.runtime import Predictor

QUIET = {"log": lambda line: None}


def props_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def invoke(*args):
    """The CLI in-process; unexpected exceptions propagate, so a test sees them as they are."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def constant_reader(batch_size: int = 32) -> CifarCalibrationReader:
    """A deliberately broken calibration set: 64 identical mid-grey images."""
    return CifarCalibrationReader.from_array(np.full((64, 32, 32, 3), 128, np.uint8), batch_size)


def test_int8_model_is_valid_keeps_metadata_and_agrees_with_fp32(reference_onnx, reference_int8):
    output = reference_int8.output
    onnx.checker.check_model(onnx.load(str(output)), full_check=True)
    fp32_props, int8_props = props_of(reference_onnx), props_of(output)
    for key, value in fp32_props.items():
        if key != KEY_PRECISION:
            assert int8_props[key] == value, key
    assert int8_props[KEY_PRECISION] == "int8"
    settings = json.loads(int8_props[KEY_QUANTIZATION])
    assert settings["format"] == "QDQ" and settings["per_channel"] and settings["method"] == DEFAULT_METHOD
    assert "built-in sample" in int8_props[KEY_CALIBRATION] and "train split" in int8_props[KEY_CALIBRATION]
    accuracy = json.loads(int8_props[KEY_INT8_ACCURACY])
    assert accuracy["split"] == "val" and accuracy["source"] == "built-in sample"
    assert accuracy["fp32_top1"] == pytest.approx(reference_int8.comparison.fp32_top1, abs=1e-6)

    test = load_sample("test")
    fp32 = Predictor(reference_onnx).predict(test.images).class_ids
    int8 = Predictor(output).predict(test.images).class_ids
    assert (fp32 == int8).mean() >= 0.98
    assert reference_int8.int8_bytes <= 0.27 * reference_int8.fp32_bytes


def test_gate_refuses_broken_calibration_and_writes_nothing(reference_onnx, tmp_path):
    output = tmp_path / "broken.int8.onnx"
    with pytest.raises(AccuracyGateError, match="nothing written"):
        quantize_onnx(reference_onnx, output, constant_reader(), load_sample("val"), max_drop=0.5, **QUIET)
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_gate_refusal_leaves_an_existing_output_intact(reference_onnx, tmp_path):
    output = tmp_path / "model.int8.onnx"
    output.write_bytes(b"previous model")
    with pytest.raises(AccuracyGateError, match="int8 loses .* nothing written to .*model.int8.onnx"):
        quantize_onnx(reference_onnx, output, constant_reader(), load_sample("val"), **QUIET)
    assert output.read_bytes() == b"previous model"


def test_fallback_keeps_sensitive_nodes_in_fp32(reference_onnx, tmp_path):
    output = tmp_path / "fallback.int8.onnx"
    val = load_sample("val")
    # Calibrated on images at half brightness (a classic pipeline slip), activation ranges come out too
    # narrow and int8 loses several points; keeping the noisiest nodes in fp32 wins them back.
    reader = CifarCalibrationReader.from_array(load_sample("train").images[:64] // 2)
    result = quantize_onnx(reference_onnx, output, reader, val, max_drop=2.0, fallback=True, **QUIET)
    assert result.first_comparison.drop > 2.0
    assert len(result.fallback) >= 1 and result.comparison.drop <= 2.0
    kept = json.loads(props_of(output)[KEY_QUANTIZATION])["fp32_nodes"]
    assert kept == [step.node for step in result.fallback]
    graph_nodes = {node.name for node in onnx.load(str(output)).graph.node}
    assert set(kept) <= graph_nodes
    assert result.fallback_cost["bytes"] > result.fallback_cost["all_int8_bytes"]


def test_no_vnni_means_reduced_range_with_a_reason():
    plain_x86 = cpu_int8_support("flags\t: fpu sse2 avx2 avx512bw\n")
    settings, note = settings_for_cpu(plain_x86)
    assert settings.reduce_range and "VNNI" in note
    vnni = cpu_int8_support("flags\t: fpu sse2 avx2 avx512bw avx512_vnni\n")
    settings, note = settings_for_cpu(vnni)
    assert not settings.reduce_range and note is None and settings.activation_type == "uint8"
    settings, _ = settings_for_cpu(vnni, reduce_range=True)
    assert settings.reduce_range


def test_quantize_refuses_an_int8_model(reference_int8, tmp_path):
    with pytest.raises(ResnetEdgeError, match="reference.int8.onnx is already int8; quantize the fp32 model"):
        quantize_onnx(reference_int8.output, tmp_path / "again.onnx", constant_reader(), load_sample("val"), **QUIET)


def test_cli_options_reach_the_report_the_metadata_and_the_graph(reference_onnx, tmp_path):
    output = tmp_path / "cli.int8.onnx"
    result = invoke("quantize", reference_onnx, "--sample", "--method", "entropy", "--per-tensor", "--reduce-range",
                    "--eval-split", "test", "--calib-size", 64, "-o", output, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["output"] == str(output) and output.is_file()
    assert report["calibration"].startswith("64 class-balanced images of the train split")
    assert report["size_ratio"] <= 0.27
    assert set(report["batch1_p50_ms"]) == {"fp32", "int8"}

    props = props_of(output)
    settings = json.loads(props[KEY_QUANTIZATION])
    assert (settings["method"], settings["per_channel"], settings["reduce_range"]) == ("entropy", False, True)
    accuracy = json.loads(props[KEY_INT8_ACCURACY])
    assert (accuracy["split"], accuracy["images"], accuracy["source"]) == ("test", 1000, "built-in sample")
    assert report["settings"] == {k: v for k, v in settings.items() if k != "cpu"}
    assert report["accuracy"]["split"] == "test"

    # What the metadata says is what the graph holds: one scale per int8 weight tensor (per-tensor) and
    # 7-bit weights (reduce-range: |q| <= 64, where full range reaches 127).
    graph = onnx.load(str(output)).graph
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    weights = [(initializers[node.input[0]], initializers[node.input[1]]) for node in graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in initializers
               and initializers[node.input[0]].dtype == np.int8]
    assert len(weights) >= 20  # every conv and the classifier
    per_channel = [q.shape for q, scale in weights if scale.size != 1]
    assert not per_channel, f"{len(per_channel)} weight tensors have per-channel scales, e.g. {per_channel[0]}"
    assert max(int(np.abs(q.astype(np.int32)).max()) for q, _ in weights) <= 64


def test_cli_gate_refusal_is_one_line_and_exit_1(reference_onnx, tmp_path):
    calibration = tmp_path / "grey.npy"
    np.save(calibration, np.full((64, 32, 32, 3), 128, np.uint8))
    output = tmp_path / "x.int8.onnx"
    result = invoke("quantize", reference_onnx, "-o", output, "--sample", "--calibration", calibration)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
    [error] = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert "int8 loses" in error and "points on val" in error  # the default --eval-split
    assert "--max-drop 0.5" in error and "--fallback" in error
    assert "calibrating (minmax) on 64 images" in result.output  # the default --method
    assert not output.exists()


def test_cli_refuses_a_model_without_metadata(tmp_path):
    bare = tmp_path / "bare.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["input"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 10])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 10])],
    )
    onnx.save(onnx.helper.make_model(graph), bare)
    result = invoke("quantize", bare, "--sample")
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, (result.exception, result.output)
    assert result.output.startswith("Error: ") and "lacks resnet-edge metadata" in result.output


def test_raw_input_model_is_calibrated_on_pixels(tmp_path):
    from resnet_edge.export import export_onnx
    from resnet_edge.reference import reference_checkpoint

    raw = tmp_path / "raw.onnx"
    export_onnx(reference_checkpoint(), raw, raw_input=True)
    normalized = CifarCalibrationReader.from_training_split(load_sample("train"), size=256)
    with pytest.raises(ResnetEdgeError, match="takes raw uint8 pixels but the calibration reader serves normalized"):
        quantize_onnx(raw, tmp_path / "raw.int8.onnx", normalized, load_sample("val"), **QUIET)
    assert not (tmp_path / "raw.int8.onnx").exists()
    reader = CifarCalibrationReader.from_training_split(load_sample("train"), size=256, raw_pixels=True)
    result = quantize_onnx(raw, tmp_path / "raw.int8.onnx", reader, load_sample("val"), **QUIET)
    assert reader.raw_pixels and result.comparison.agreement >= 0.98
    int8 = Predictor(result.output)
    assert int8.metadata.raw_input and int8.precision == "int8"
    assert int8.session.get_inputs()[0].type == "tensor(uint8)"


def test_unknown_cpu_flags_keep_full_range_and_say_why():
    unknown = cpu_int8_support("")
    assert unknown.vnni is None or unknown.family != "x86"
    if unknown.family == "x86":
        settings, note = settings_for_cpu(unknown)
        assert not settings.reduce_range and "unknown" in note


def test_openvino_runs_the_int8_model_too(reference_int8):
    pytest.importorskip("openvino")
    from resnet_edge.bench.engines import load_engine
    from resnet_edge.runtime.session import read_metadata

    images = load_sample("test").images[:64]
    ours, _ = load_engine("onnxruntime", reference_int8.output, 64, None)
    theirs, precision = load_engine("openvino", reference_int8.output, 64, None, read_metadata(reference_int8.output))
    assert precision == "int8"
    assert (ours(images).argmax(1) == theirs(images).argmax(1)).mean() >= 0.95
