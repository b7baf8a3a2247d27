"""Calibration reader: class balance, seeding, preprocessing parity, data-source rules, quantize_static."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from resnet_edge.calibration import CifarCalibrationReader, balanced_indices
from resnet_edge.cifar10 import MEAN, NUM_CLASSES, STD
from resnet_edge.data import load_sample
from resnet_edge.metadata import INPUT_NAME, OUTPUT_NAME
from resnet_edge.normalization import normalize


@pytest.fixture(scope="module")
def train():
    return load_sample("train")


def all_batches(reader: CifarCalibrationReader) -> list[np.ndarray]:
    return [batch[INPUT_NAME] for batch in reader]


@pytest.mark.parametrize("size", [10, 53, 512])
def test_balanced_indices_split_evenly_and_sorted(train, size):
    picks = balanced_indices(train.labels, size)
    counts = np.bincount(train.labels[picks], minlength=NUM_CLASSES)
    assert len(picks) == size == counts.sum()
    assert counts.max() - counts.min() <= 1
    assert np.all(np.diff(picks) > 0)  # sorted, no repeats


def test_balanced_indices_seeded(train):
    first = balanced_indices(train.labels, 100, seed=3)
    assert np.array_equal(first, balanced_indices(train.labels, 100, seed=3))
    assert not np.array_equal(first, balanced_indices(train.labels, 100, seed=4))


def test_balanced_indices_refuses_bad_sizes_and_labels(train):
    with pytest.raises(ValueError, match="at least 1, got 0"):
        balanced_indices(train.labels, 0)
    # 100 images per class in the sample; 1001 needs 101 in at least one class.
    with pytest.raises(ValueError, match="has 100 of the 101 needed"):
        balanced_indices(train.labels, 1001)
    with pytest.raises(ValueError, match="class ids 0..9"):
        balanced_indices(np.array([0, 10]), 1)
    with pytest.raises(ValueError, match="1-D integer"):
        balanced_indices(np.zeros(5, dtype=np.float32), 1)


def test_batches_are_normalize_of_the_chosen_images(train):
    reader = CifarCalibrationReader.from_training_split(train, size=70, batch_size=32, seed=1)
    batches = all_batches(reader)
    assert len(reader) == len(batches) == 3
    assert [b.shape for b in batches] == [(32, 3, 32, 32), (32, 3, 32, 32), (6, 3, 32, 32)]
    assert all(b.dtype == np.float32 for b in batches)
    expected = normalize(train.images[balanced_indices(train.labels, 70, seed=1)], MEAN, STD)
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_reader_exhausts_then_rewinds(train):
    reader = CifarCalibrationReader(train.images[:10], batch_size=4)
    first = reader.get_next()
    assert list(first) == [INPUT_NAME]
    assert reader.get_next() is not None and reader.get_next() is not None
    assert reader.get_next() is None
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()[INPUT_NAME], first[INPUT_NAME])


def test_set_range_serves_a_slice_of_batches(train):
    reader = CifarCalibrationReader(train.images[:10], batch_size=4)
    reader.set_range(1, 2)
    np.testing.assert_array_equal(reader.get_next()[INPUT_NAME], normalize(train.images[4:8], MEAN, STD))
    assert reader.get_next() is None
    reader.set_range(0, len(reader))
    assert len(all_batches(reader)) == 3
    with pytest.raises(ValueError, match="got 2 and 2"):
        reader.set_range(2, 2)


def test_refuses_the_test_split():
    with pytest.raises(ValueError, match="never the test split"):
        CifarCalibrationReader.from_training_split(load_sample("test"))


def test_refuses_the_val_split():
    with pytest.raises(ValueError, match="'train' split, got 'val'"):
        CifarCalibrationReader.from_training_split(load_sample("val"), size=10)


@pytest.mark.parametrize(
    ("images", "batch_size", "message"),
    [
        (np.zeros((2, 32, 32, 3), np.float32), 1, "float32 of shape \\(2, 32, 32, 3\\)"),
        (np.zeros((2, 3, 32, 32), np.uint8), 1, "uint8 of shape \\(2, 3, 32, 32\\)"),
        (np.zeros((32, 32, 3), np.uint8), 1, "shape \\(32, 32, 3\\)"),
        (np.zeros((0, 32, 32, 3), np.uint8), 1, "0 images"),
        ([[0]], 1, "got list"),
        (np.zeros((2, 32, 32, 3), np.uint8), 0, "positive integer, got 0"),
    ],
)
def test_bad_inputs_raise_value_error(images, batch_size, message):
    with pytest.raises(ValueError, match=message):
        CifarCalibrationReader(images, batch_size)


def test_from_array_reads_npy_and_arrays(train, tmp_path):
    path = tmp_path / "deploy.npy"
    np.save(path, train.images[:5])
    from_file = CifarCalibrationReader.from_array(path, batch_size=2)
    np.testing.assert_array_equal(np.concatenate(all_batches(from_file)), normalize(train.images[:5], MEAN, STD))
    assert len(CifarCalibrationReader.from_array(train.images[:5], batch_size=5)) == 1

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, train.images[:5].astype(np.float32))
    with pytest.raises(ValueError, match="wrong.npy: calibration images must be a uint8"):
        CifarCalibrationReader.from_array(wrong)
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled.npy: not a plain numeric .npy array"):
        CifarCalibrationReader.from_array(pickled)


def test_from_folder_reads_pngs(train, tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    for i in range(3):
        image_module.fromarray(train.images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    reader = CifarCalibrationReader.from_folder(tmp_path, batch_size=2)
    np.testing.assert_array_equal(np.concatenate(all_batches(reader)), normalize(train.images[:3], MEAN, STD))

    image_module.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: image is 16x16, expected 32x32"):
        CifarCalibrationReader.from_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        CifarCalibrationReader.from_folder(empty)


def test_import_does_not_load_torch():
    code = "import resnet_edge.calibration, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def tiny_conv_model():
    """Conv + GlobalAveragePool + Flatten with the exported model's input and output names."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.1, (NUM_CLASSES, 3, 3, 3)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(np.zeros(NUM_CLASSES, np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", [INPUT_NAME, "weight", "bias"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def test_quantize_static_consumes_the_reader(train, tmp_path):
    model = tiny_conv_model()
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_static

    fp32_path, int8_path = tmp_path / "tiny.onnx", tmp_path / "tiny.int8.onnx"
    onnx.save(model, fp32_path)
    reader = CifarCalibrationReader.from_training_split(train, size=64, batch_size=16)
    quantize_static(fp32_path, int8_path, reader, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert reader.get_next() is None  # every batch was used

    ops = {node.op_type for node in onnx.load(int8_path).graph.node}
    assert "QuantizeLinear" in ops
    batch = normalize(train.images[:8], MEAN, STD)
    fp32, int8 = (
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        for path in (fp32_path, int8_path)
    )
    assert int8.shape == (8, NUM_CLASSES)
    # Ranges came from the same preprocessing, so int8 stays close to fp32.
    assert np.abs(int8 - fp32).max() < 0.05 * np.abs(fp32).max() + 1e-3
