import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from resnet_edge import metadata as meta
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import load_sample
from resnet_edge.errors import MetadataError, MissingExtraError
from resnet_edge.runtime import Predictor, normalize
from resnet_edge.runtime.images import read_image_file
from resnet_edge.runtime.session import providers_with_caches

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor(onnx_model):
    return Predictor(onnx_model)


@pytest.fixture(scope="module")
def images():
    return load_sample("test").images[:12]


def test_every_input_form_gives_the_same_answer(predictor, images):
    batch = predictor.predict(images, top_k=3)
    floats = predictor.predict(normalize(images, MEAN, STD), top_k=3)
    assert np.array_equal(batch.top_k_ids, floats.top_k_ids)
    assert np.allclose(batch.probabilities, floats.probabilities, atol=1e-6)
    for i in (0, 5):
        single = predictor.predict(images[i], top_k=3)
        assert len(single) == 1
        assert np.array_equal(single.top_k_ids[0], batch.top_k_ids[i])
        assert np.allclose(single.probabilities[0], batch.probabilities[i], atol=1e-6)


def test_results_are_probabilities_with_names_from_metadata(predictor, images):
    result = predictor.predict(images, top_k=4)
    assert predictor.class_names == CLASS_NAMES
    assert result.probabilities.shape == (12, 10) and result.probabilities.dtype == np.float32
    assert np.allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert result.top_k_ids.shape == (12, 4)
    assert np.all(np.diff(result.top_k_probabilities, axis=1) <= 0)
    assert np.array_equal(result.class_ids, result.probabilities.argmax(axis=1))
    assert result.class_names == [CLASS_NAMES[i] for i in result.class_ids]
    record = result.to_records()[0]
    assert record["class_name"] == result.class_names[0] and len(record["top_k"]) == 4
    top1 = predictor.predict(images)  # top-1 takes argmax, not the sort: the same answer
    assert np.array_equal(top1.top_k_ids, result.top_k_ids[:, :1])
    assert np.array_equal(top1.top_k_probabilities, result.top_k_probabilities[:, :1])
    assert top1.top_k_names == [names[:1] for names in result.top_k_names]


def test_large_batches_are_chunked_in_order(onnx_model, images):
    whole = Predictor(onnx_model).logits(images)
    chunked = Predictor(onnx_model, chunk_size=5).logits(images)
    assert np.allclose(whole, chunked, atol=1e-5)
    # One run up to chunk_size images, chunks from one more; streams split even small batches.
    for size in (5, 6):
        assert np.allclose(Predictor(onnx_model, chunk_size=5).logits(images[:size]), whole[:size], atol=1e-5)
    with Predictor(onnx_model, streams=2) as streamed:
        assert np.allclose(streamed.logits(images[:3]), whole[:3], atol=1e-5)


def test_eight_threads_times_a_hundred_calls_match_sequential_ones(predictor):
    inputs = load_sample("test").images[:800]
    expected = [predictor.predict(inputs[i]).probabilities for i in range(800)]
    results, errors = {}, []
    start = threading.Barrier(8)

    def worker(offset: int) -> None:
        try:
            start.wait()  # all threads call at once
            for i in range(offset, 800, 8):
                results[i] = predictor.predict(inputs[i]).probabilities
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 800
    assert all(np.array_equal(results[i], expected[i]) for i in range(800))


def test_pil_images_paths_and_lists_give_the_same_answer(predictor, images, tmp_path):
    from PIL import Image

    expected = predictor.predict(images[:3]).probabilities
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    assert np.allclose(predictor.predict(Image.fromarray(images[0])).probabilities, expected[:1], atol=1e-6)
    assert np.allclose(predictor.predict(paths[1]).probabilities, expected[1:2], atol=1e-6)
    assert np.allclose(predictor.predict(str(paths[2])).probabilities, expected[2:3], atol=1e-6)
    mixed = [paths[0], Image.fromarray(images[1]), images[2]]
    assert np.allclose(predictor.predict(mixed).probabilities, expected, atol=1e-6)


def test_other_sizes_need_resize_true(predictor, images):
    from PIL import Image

    big = np.asarray(Image.fromarray(images[0]).resize((64, 64), Image.Resampling.BILINEAR))
    with pytest.raises(ValueError, match=r"image is 64x64, the model takes 32x32; pass resize=True"):
        predictor.predict(big)
    with pytest.raises(ValueError, match=r"images are 64x64, the model takes 32x32"):
        predictor.predict(np.stack([big, big]))
    one = predictor.predict(big, resize=True)
    batch = predictor.predict(np.stack([big, big]), resize=True)
    pil = predictor.predict(Image.fromarray(big), resize=True)
    assert np.allclose(one.probabilities, batch.probabilities[:1], atol=1e-6)
    assert np.allclose(one.probabilities, pil.probabilities, atol=1e-6)


def test_session_options_providers_and_cache(onnx_model, images, tmp_path):
    reference = Predictor(onnx_model).predict(images).probabilities
    for level in ("disabled", "basic", "extended"):
        assert np.allclose(Predictor(onnx_model, optimization=level).predict(images).probabilities, reference,
                           atol=1e-5)
    no_spin = Predictor(onnx_model, threads=2, session_config={"session.intra_op.allow_spinning": "0"})
    assert np.allclose(no_spin.predict(images).probabilities, reference, atol=1e-5)
    with pytest.raises(ValueError, match="unknown graph optimization level 'fast'"):
        Predictor(onnx_model, optimization="fast")
    with pytest.raises(ValueError, match="NoSuchExecutionProvider not available.*available: .*CPUExecutionProvider"):
        Predictor(onnx_model, providers=["NoSuchExecutionProvider"])
    assert Predictor(onnx_model, providers=["cpu"]).providers == ["CPUExecutionProvider"]  # short names, any case

    first = Predictor(onnx_model, cache_dir=tmp_path / "cache")
    second = Predictor(onnx_model, cache_dir=tmp_path / "cache")
    assert not first.from_cache and second.from_cache
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert second.metadata == first.metadata
    assert np.allclose(second.predict(images).probabilities, reference, atol=1e-5)


def test_raw_input_model_takes_pixels_and_matches_the_normalized_one(trained_run, images, tmp_path):
    import torch

    from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from resnet_edge.export import export_onnx

    raw_path = tmp_path / "raw.onnx"
    result = export_onnx(trained_run / "best.pt", raw_path, raw_input=True)
    assert result.metadata.input_layout == "NHWC_UINT8"
    raw = Predictor(raw_path)
    assert raw.metadata.raw_input and raw.session.get_inputs()[0].type == "tensor(uint8)"

    # The reference: the plain fp32 model on (x / 255 - mean) / std, both written out here, against
    # onnxruntime on the raw pixels, so the graph's own Mul/Add is checked against the formula.
    pixels = np.concatenate([images, np.random.default_rng(7).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)])
    x = (pixels.transpose(0, 3, 1, 2) / 255.0 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]
    model = model_from_checkpoint(load_checkpoint(trained_run / "best.pt"))
    with torch.no_grad():
        expected = model(torch.from_numpy(x.astype(np.float32))).numpy()
    session = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"])
    for batch in (slice(0, 1), slice(0, len(pixels))):
        (actual,) = session.run(["logits"], {"input": pixels[batch]})
        diff, tolerance = np.abs(actual - expected[batch]).max(), 1e-4 * max(1.0, np.abs(expected[batch]).max())
        assert diff <= tolerance, f"max |Δlogit| {diff:.3e} > {tolerance:.3e}"
        assert np.array_equal(actual.argmax(1), expected[batch].argmax(1))
    assert np.array_equal(raw.predict(images).class_ids, expected[: len(images)].argmax(1))
    with pytest.raises(ValueError, match="takes raw uint8 pixels"):
        raw.predict(normalize(images, MEAN, STD))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"image": 1}, "got dict"),
        ([], "empty list"),
        ([np.zeros((32, 32), np.uint8)], r"uint8 array of shape \(32, 32\)"),
        (np.zeros((28, 28, 3), np.uint8), r"image is 28x28, the model takes 32x32"),
        (np.zeros((2, 3, 32, 32), np.uint8), r"uint8 array of shape \(2, 3, 32, 32\)"),
        (np.zeros((32, 32), np.uint8), r"uint8 array of shape \(32, 32\)"),
        (np.zeros((2, 32, 32, 3), np.float32), r"float32 array of shape \(2, 32, 32, 3\)"),
        (np.zeros((2, 3, 32, 32), np.float64), "float64 array"),
        (np.zeros((2, 32, 32, 3), np.int64), "int64 array"),
        (np.zeros((0, 32, 32, 3), np.uint8), "empty batch"),
        (np.zeros((0, 3, 32, 32), np.float32), "empty batch"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN or infinity"),
        (np.full((1, 3, 32, 32), -np.inf, np.float32), "NaN or infinity"),
        ((np.zeros((32, 32, 3), np.uint8), 3), r"item 1 of the list: expected a uint8 .*; got int"),
        ([np.zeros((32, 32, 4), np.uint8)], r"item 0 of the list: got a uint8 array of shape \(32, 32, 4\)"),
        ([np.zeros((1, 32, 32, 3), np.uint8)], r"item 0 of the list: got a uint8 array of shape \(1, 32, 32, 3\)"),
        (np.zeros((32, 32, 4), np.uint8), r"uint8 array of shape \(32, 32, 4\)"),
    ],
)
def test_bad_input_raises_value_error_naming_it(predictor, bad, message):
    with pytest.raises(ValueError, match=message) as info:
        predictor.predict(bad)
    if "array of shape" in message:
        assert "expected a uint8 (32, 32, 3) image" in str(info.value) and "PIL image" in str(info.value)


def test_bad_top_k_and_options(predictor, onnx_model, images):
    for k in (0, 11):
        with pytest.raises(ValueError, match=f"top_k must be between 1 and 10, got {k}"):
            predictor.predict(images, top_k=k)
    with pytest.raises(ValueError, match="threads must be an integer of at least 1"):
        Predictor(onnx_model, threads=0)


def test_model_without_metadata_is_refused(tmp_path):
    from resnet_edge.export import model_to_onnx_bytes
    from resnet_edge.model import ResNet18

    bare = tmp_path / "bare.onnx"
    bare.write_bytes(model_to_onnx_bytes(ResNet18()))
    with pytest.raises(MetadataError, match="lacks resnet-edge metadata"):
        Predictor(bare)


def test_missing_and_garbage_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        Predictor(tmp_path / "none.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not onnx")
    with pytest.raises(MetadataError, match="cannot load .* as an ONNX model"):
        Predictor(garbage)


def test_reading_image_files(tmp_path, images):
    from PIL import Image

    png = tmp_path / "cat.png"
    Image.fromarray(images[0]).save(png)
    assert np.array_equal(read_image_file(png), images[0])
    npy = tmp_path / "batch.npy"
    np.save(npy, images)
    assert np.array_equal(read_image_file(npy), images)
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric .npy array"):
        read_image_file(pickled)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="neither a .npy array nor an image"):
        read_image_file(text)
    with pytest.raises(ValueError, match="no such file"):
        read_image_file(tmp_path / "missing.png")


def test_openvino_runs_the_same_onnx_file_as_onnxruntime(onnx_model, images):
    pytest.importorskip("openvino")
    from resnet_edge.bench.engines import load_engine

    from resnet_edge.runtime.session import read_metadata

    ours, _ = load_engine("onnxruntime", onnx_model, 12, 1)
    theirs, precision = load_engine("openvino", onnx_model, 12, 1, read_metadata(onnx_model))
    assert precision == "fp32"
    assert np.allclose(ours(images), theirs(images), atol=1e-4)
    # In 4 streams, 10 images go out as shares of 3, 3, 3 and 1 (padded to the compiled 3) and come back in order.
    in_streams, _ = load_engine("openvino", onnx_model, 10, 1, read_metadata(onnx_model), streams=4)
    assert np.allclose(in_streams(images[:10]), ours(images)[:10], atol=1e-4)


def test_streams_split_a_batch_over_concurrent_runs_in_order(onnx_model, predictor, images):
    batch = np.concatenate([images] * 9)  # 108 images
    expected = predictor.predict(batch).probabilities
    for streams, chunk_size in ((2, 256), (3, 7), (4, 1000)):
        streamed = Predictor(onnx_model, threads=1, streams=streams, chunk_size=chunk_size)
        # Other thread counts and batch shapes may sum in another order: equal up to float rounding.
        assert np.allclose(streamed.predict(batch).probabilities, expected, atol=1e-6)
        assert np.allclose(streamed.predict(images[0]).probabilities, expected[:1], atol=1e-6)
        streamed.close()
    from resnet_edge.runtime.session import usable_cores

    with Predictor(onnx_model, streams=2) as shared:  # the cores are divided among the streams
        assert shared.threads == max(1, usable_cores() // 2)
    assert np.allclose(shared.predict(batch).probabilities, expected, atol=1e-6)  # closed: one chunk at a time


# --- Input forms not covered above -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_predictor(trained_run, tmp_path_factory):
    """The trained run exported with --raw-input (uint8 NHWC in, normalization in the graph), chunking by 5."""
    from resnet_edge.export import export_onnx

    path = tmp_path_factory.mktemp("raw") / "raw.onnx"
    export_onnx(trained_run / "best.pt", path, raw_input=True)
    return Predictor(path, chunk_size=5)


def test_npy_files_hold_any_array_form(predictor, images, tmp_path):
    expected = predictor.predict(images).probabilities
    for name, array, rows in [
        ("image.npy", images[3], slice(3, 4)),
        ("batch.npy", images, slice(None)),
        ("floats.npy", normalize(images, MEAN, STD), slice(None)),
    ]:
        path = tmp_path / name
        np.save(path, array)
        assert np.allclose(predictor.predict(path).probabilities, expected[rows], atol=1e-6), name
        assert np.allclose(predictor.predict(str(path)).probabilities, expected[rows], atol=1e-6), name
    listed = predictor.predict([tmp_path / "image.npy", images[4]]).probabilities
    assert np.allclose(listed, expected[3:5], atol=1e-6)


def test_tuples_views_and_non_rgb_pil_images(predictor, images):
    from PIL import Image

    expected = predictor.predict(images).probabilities
    assert np.allclose(predictor.predict(tuple(images[:3])).probabilities, expected[:3], atol=1e-6)
    # Non-contiguous views keep input order.
    assert np.allclose(predictor.predict(images[::-1]).probabilities, expected[::-1], atol=1e-6)
    assert np.allclose(predictor.predict(normalize(images, MEAN, STD)[::-2]).probabilities, expected[::-2], atol=1e-6)
    rgba = Image.fromarray(np.dstack([images[0], np.full((32, 32), 7, np.uint8)]), "RGBA")
    assert np.allclose(predictor.predict(rgba).probabilities, expected[:1], atol=1e-6)
    gray = images[1].mean(axis=2).astype(np.uint8)
    assert np.allclose(predictor.predict(Image.fromarray(gray, "L")).probabilities,
                       predictor.predict(np.repeat(gray[:, :, None], 3, axis=2)).probabilities, atol=1e-6)


def test_resize_and_size_errors_for_paths_pil_images_and_lists(predictor, images, tmp_path):
    from PIL import Image

    big = np.asarray(Image.fromarray(images[0]).resize((64, 64), Image.Resampling.BILINEAR))
    png = tmp_path / "big.png"
    Image.fromarray(big).save(png)
    with pytest.raises(ValueError, match=re.escape(f"{png}: image is 64x64, the model takes 32x32; pass resize=True")):
        predictor.predict(png)
    with pytest.raises(ValueError, match=r"^PIL image: image is 64x64, the model takes 32x32"):
        predictor.predict(Image.fromarray(big))
    with pytest.raises(ValueError, match=r"^item 1 of the list: image is 64x64"):
        predictor.predict([images[1], big])
    # Width x height, as images are usually named.
    with pytest.raises(ValueError, match=r"image is 64x40, the model takes 32x32"):
        predictor.predict(np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"images are 64x40, the model takes 32x32"):
        predictor.predict(np.zeros((2, 40, 64, 3), np.uint8))

    resized = predictor.predict(big, resize=True).probabilities
    assert np.allclose(predictor.predict(png, resize=True).probabilities, resized, atol=1e-6)
    mixed = predictor.predict([big, images[1], png], resize=True).probabilities
    assert np.allclose(mixed[[0, 2]], np.concatenate([resized, resized]), atol=1e-6)
    assert np.allclose(mixed[1], predictor.predict(images[1]).probabilities[0], atol=1e-6)
    # resize=True leaves images of the right size untouched.
    assert np.allclose(predictor.predict(images, resize=True).probabilities, predictor.predict(images).probabilities,
                       atol=1e-6)


def test_raw_input_model_takes_every_uint8_form_in_chunks(raw_predictor, predictor, images, tmp_path):
    from PIL import Image

    assert raw_predictor.metadata.input_layout == "NHWC_UINT8" and raw_predictor.chunk_size == 5
    batch = raw_predictor.preprocess(images)
    assert batch.dtype == np.uint8 and batch.shape == (12, 32, 32, 3) and batch.flags.c_contiguous
    expected = predictor.predict(images).probabilities
    got = raw_predictor.predict(images)  # 12 images in chunks of 5, 5 and 2
    assert np.allclose(got.probabilities, expected, atol=1e-5)
    assert np.allclose(raw_predictor.predict(images[::-1]).probabilities, expected[::-1], atol=1e-5)
    png, npy = tmp_path / "0.png", tmp_path / "batch.npy"
    Image.fromarray(images[0]).save(png)
    np.save(npy, images)
    assert np.allclose(raw_predictor.predict(images[0]).probabilities, expected[:1], atol=1e-5)
    assert np.allclose(raw_predictor.predict(Image.fromarray(images[1])).probabilities, expected[1:2], atol=1e-5)
    assert np.allclose(raw_predictor.predict(png).probabilities, expected[:1], atol=1e-5)
    assert np.allclose(raw_predictor.predict(npy).probabilities, expected, atol=1e-5)
    assert np.allclose(raw_predictor.predict([png, images[1], images[2]]).probabilities, expected[:3], atol=1e-5)
    floats = tmp_path / "floats.npy"
    np.save(floats, normalize(images, MEAN, STD))
    with pytest.raises(ValueError, match="raw.onnx takes raw uint8 pixels .* not a normalized float32 batch"):
        raw_predictor.predict(floats)


def test_top_k_can_rank_every_class(predictor, images):
    result = predictor.predict(images[:2], top_k=10)
    assert all(sorted(row) == list(range(10)) for row in result.top_k_ids.tolist())
    assert np.allclose(result.top_k_probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [len(record["top_k"]) for record in result.to_records()] == [10, 10]


# --- Errors not covered above -----------------------------------------------------------------------------------


def test_unreadable_files_are_named_in_the_error(predictor, images, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match=re.escape(f"{text}: neither a .npy array nor an image")):
        predictor.predict(text)
    with pytest.raises(ValueError, match=r"missing\.png: no such file"):
        predictor.predict(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=r"^item 1 of the list: .*missing\.png: no such file"):
        predictor.predict([images[0], tmp_path / "missing.png"])
    with pytest.raises(ValueError, match=r"missing\.npy: no such file"):
        predictor.predict(tmp_path / "missing.npy")
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy: not a plain numeric .npy array"):
        predictor.predict(pickled)
    for name, array, message in [
        ("doubles.npy", np.zeros((2, 3, 32, 32)), r"got a float64 array of shape \(2, 3, 32, 32\)"),
        ("flat.npy", np.zeros((32, 32), np.uint8), r"got a uint8 array of shape \(32, 32\)"),
        ("small.npy", np.zeros((2, 28, 28, 3), np.uint8),
         r"got a uint8 array of shape \(2, 28, 28, 3\): images are 28x28"),
    ]:
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / name))}: {message}"):
            predictor.predict(tmp_path / name)


def test_without_pillow_files_and_resizing_name_the_extra(predictor, images, tmp_path, monkeypatch):
    from PIL import Image

    png = tmp_path / "0.png"
    Image.fromarray(images[0]).save(png)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # as if Pillow were not installed
    assert len(predictor.predict(images[0])) == 1  # arrays need no Pillow
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'resnet-edge[images]'")):
        predictor.predict(png)
    with pytest.raises(MissingExtraError, match=r"resize=True needs the 'PIL.Image' package"):
        predictor.predict(np.zeros((64, 64, 3), np.uint8), resize=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": -1}, "threads must be an integer of at least 1 .*got -1"),
        ({"threads": 1.5}, "threads must be an integer of at least 1 .*got 1.5"),
        ({"chunk_size": 0}, "chunk_size must be an integer of at least 1, got 0"),
        ({"chunk_size": -5}, "chunk_size must be an integer of at least 1, got -5"),
        ({"chunk_size": "64"}, "chunk_size must be an integer of at least 1, got '64'"),
        ({"streams": 0}, "streams must be an integer of at least 1, got 0"),
        ({"providers": []}, r"execution provider\(s\) \(none given\) not available"),
        ({"optimization": "ALL"}, "unknown graph optimization level 'ALL'; expected one of disabled, basic"),
        ({"providers": ["CPUExecutionProvider", "Bogus"]}, "execution provider.*Bogus not available"),
        ({"session_config": {"": "1"}}, "onnxruntime refused session config =1"),
    ],
)
def test_bad_predictor_options_raise_value_error(onnx_model, options, message):
    with pytest.raises(ValueError, match=message) as info:
        Predictor(onnx_model, **options)
    assert not isinstance(info.value, MetadataError)


def test_a_folder_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        Predictor(tmp_path)


def _tiny_model(path, props, input_name=meta.INPUT_NAME, output_name=meta.OUTPUT_NAME):
    """A small real ONNX classifier (mean pixel per channel → 10 logits) with ``props`` as its metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10), "weights")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], [output_name])],
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 10])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def exported_props(predictor):
    """The resnet-edge metadata of the real export, to copy onto small models."""
    return dict(predictor.session.get_modelmeta().custom_metadata_map)


def test_wrong_input_or_output_names_are_refused(exported_props, images, tmp_path):
    good = Predictor(_tiny_model(tmp_path / "good.onnx", exported_props))
    assert good.metadata.class_names == CLASS_NAMES and len(good.predict(images)) == 12
    with pytest.raises(MetadataError, match=r"has inputs \['x'\] and outputs \['logits'\]; expected input 'input'"):
        Predictor(_tiny_model(tmp_path / "input.onnx", exported_props, input_name="x"))
    with pytest.raises(MetadataError, match=r"has inputs \['input'\] and outputs \['scores'\]; .*output 'logits'"):
        Predictor(_tiny_model(tmp_path / "output.onnx", exported_props, output_name="scores"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (meta.KEY_PRECISION, None, r"lacks resnet-edge metadata \(resnet_edge.precision\)"),
        (meta.KEY_METADATA_VERSION, "2", "has metadata version '2'; this resnet-edge reads version '1'"),
        (meta.KEY_CLASS_NAMES, "[airplane", "malformed resnet-edge metadata"),
        (meta.KEY_IMAGE_SIZE, "32px", "malformed resnet-edge metadata"),
        (meta.KEY_MEAN, "[0.5, 0.5]", "expected 3 values each, std > 0"),
        (meta.KEY_STD, "[0.2, 0.2, 0.0]", "expected 3 values each, std > 0"),
        (meta.KEY_PRECISION, "fp16", "declares precision 'fp16'"),
        (meta.KEY_INPUT_LAYOUT, "NHWC", "declares input layout 'NHWC'"),
    ],
)
def test_bad_metadata_is_refused(exported_props, tmp_path, key, value, message):
    props = dict(exported_props)
    if value is None:
        del props[key]
    else:
        props[key] = value
    path = _tiny_model(tmp_path / "bad.onnx", props)
    with pytest.raises(MetadataError, match=message):
        Predictor(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (meta.KEY_CLASS_NAMES, json.dumps(list(CLASS_NAMES[:9])), r"names 9 classes, but .* shape \[N, 10\]"),
        (meta.KEY_IMAGE_SIZE, "64", r"NCHW float32 input of 64x64 images, but .*tensor\(float\) of shape"),
        (meta.KEY_INPUT_LAYOUT, "NHWC_UINT8", r"NHWC uint8 input of 32x32 images, but .*tensor\(float\) of shape"),
    ],
)
def test_metadata_that_contradicts_the_graph_is_refused_at_load(exported_props, tmp_path, key, value, message):
    path = _tiny_model(tmp_path / "contradicting.onnx", {**exported_props, key: value})
    with pytest.raises(MetadataError, match=message):
        Predictor(path)


def test_read_metadata_matches_the_predictor_and_refuses_garbage(predictor, onnx_model, tmp_path):
    from resnet_edge.runtime.session import read_metadata

    assert read_metadata(onnx_model) == predictor.metadata
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07garbage")
    with pytest.raises(MetadataError, match="cannot load .*garbage.onnx as an ONNX model"):
        read_metadata(garbage)


def test_softmax_leaves_the_logits_alone():
    from resnet_edge.runtime.predictor import softmax

    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    before = logits.copy()
    probabilities = softmax(logits)
    assert np.array_equal(logits, before) and not np.shares_memory(probabilities, logits)
    assert np.allclose(probabilities.sum(axis=1), 1.0) and np.allclose(probabilities[1], 1 / 3)


def test_normalize_refuses_anything_but_uint8_nhwc(images):
    expected = ((images / 255.0 - np.array(MEAN)) / np.array(STD)).transpose(0, 3, 1, 2)
    normalized = normalize(images, MEAN, STD)
    assert np.allclose(normalized, expected, atol=1e-5)
    assert normalized.flags.writeable and normalized.flags.c_contiguous  # the cached constants never leak out
    other = normalize(images, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])  # another mean/std, then the first again
    assert np.allclose(other, (images / 255.0 - 0.5).transpose(0, 3, 1, 2) / 0.25, atol=1e-5)
    assert np.array_equal(normalize(images, MEAN, STD), normalized)
    for bad in (images.astype(np.float32), images[0], images[..., :2]):
        with pytest.raises(ValueError, match=r"normalize expects uint8 images of shape \(N, H, W, 3\)"):
            normalize(bad, MEAN, STD)


def test_cache_problems_never_stop_the_predictor(onnx_model, images, predictor, tmp_path):
    expected = predictor.predict(images).probabilities
    cache = tmp_path / "cache"
    assert not Predictor(onnx_model, cache_dir=cache).from_cache
    (entry,) = cache.iterdir()
    entry.write_bytes(b"damaged")  # a crash or a full disk
    rebuilt = Predictor(onnx_model, cache_dir=cache)
    assert not rebuilt.from_cache
    assert np.allclose(rebuilt.predict(images).probabilities, expected, atol=1e-5)
    again = Predictor(onnx_model, cache_dir=cache)
    assert again.from_cache and [p.name for p in cache.iterdir()] == [entry.name]
    assert np.allclose(again.predict(images).probabilities, expected, atol=1e-5)

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uncached = Predictor(onnx_model, cache_dir=blocker / "cache")  # the folder cannot be made
    assert not uncached.from_cache
    assert np.allclose(uncached.predict(images).probabilities, expected, atol=1e-5)

    assert not Predictor(onnx_model, optimization="disabled", cache_dir=tmp_path / "unused").from_cache
    assert not (tmp_path / "unused").exists()  # nothing to save for an unoptimized graph

    # OpenVINO compiles the graph, so onnxruntime has nothing to save: its own cache takes a subfolder.
    assert providers_with_caches(["OpenVINOExecutionProvider", "CPUExecutionProvider"], cache) == [
        ("OpenVINOExecutionProvider", {"cache_dir": str(cache / "openvino")}), "CPUExecutionProvider"]
    assert (cache / "openvino").is_dir()
    assert providers_with_caches(["OpenVINOExecutionProvider"], blocker / "cache") == ["OpenVINOExecutionProvider"]

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not onnx")
    with pytest.raises(MetadataError, match="cannot load .* as an ONNX model"):
        Predictor(garbage, cache_dir=tmp_path / "garbage-cache")
    assert list((tmp_path / "garbage-cache").iterdir()) == []  # no temporary file left behind


@pytest.mark.skipif("OpenVINOExecutionProvider" not in ort.get_available_providers(),
                    reason="needs the onnxruntime-openvino build in place of onnxruntime")
def test_openvino_execution_provider_agrees_and_keeps_its_own_cache(onnx_model, predictor, images, tmp_path):
    on_openvino = Predictor(onnx_model, providers=["openvino"], cache_dir=tmp_path / "cache")
    assert on_openvino.session.get_providers()[0] == "OpenVINOExecutionProvider" and not on_openvino.from_cache
    assert np.array_equal(on_openvino.predict(images).class_ids, predictor.predict(images).class_ids)
    assert list((tmp_path / "cache" / "openvino").iterdir())  # OpenVINO's compiled model, not an ONNX graph


# --- Concurrency and the torch-free runtime ----------------------------------------------------------------------


def _in_threads(count, work):
    """Run ``work(index)`` in ``count`` threads started together; the results by index, re-raising any error."""
    results, errors = {}, []
    start = threading.Barrier(count)

    def worker(index: int) -> None:
        try:
            start.wait()
            results[index] = work(index)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("raw", [False, True], ids=["normalized", "raw-input"])
def test_threads_share_a_chunking_predictor(onnx_model, raw_predictor, images, raw):
    shared = raw_predictor if raw else Predictor(onnx_model, chunk_size=5)
    batches = [np.roll(images, k, axis=0) for k in range(4)]
    expected = [shared.predict(batch, top_k=3) for batch in batches]

    def work(k: int) -> list:
        return [shared.predict(batches[k], top_k=3) for _ in range(5)]

    results = _in_threads(4, work)
    for k in range(4):
        for got in results[k]:
            assert np.array_equal(got.probabilities, expected[k].probabilities)
            assert got.top_k_names == expected[k].top_k_names


def test_concurrent_starts_share_one_cache_entry(onnx_model, predictor, images, tmp_path):
    cache = tmp_path / "cache"
    expected = predictor.predict(images).probabilities
    results = _in_threads(4, lambda k: Predictor(onnx_model, cache_dir=cache).predict(images).probabilities)
    assert all(np.allclose(results[k], expected, atol=1e-5) for k in range(4))
    assert [p.suffix for p in cache.iterdir()] == [".onnx"]  # one entry, no temporary files
    assert Predictor(onnx_model, cache_dir=cache).from_cache


def test_predicting_every_form_never_imports_torch_or_onnx(onnx_model, predictor, images, tmp_path):
    from PIL import Image

    png, npy = tmp_path / "0.png", tmp_path / "batch.npy"
    Image.fromarray(images[0]).save(png)
    np.save(npy, images)
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from PIL import Image
        from resnet_edge.runtime import Predictor, measure_latency
        predictor = Predictor({str(onnx_model)!r}, threads=1, chunk_size=5, cache_dir={str(tmp_path / "cache")!r})
        images = np.load({str(npy)!r})
        for form in (images[0], {str(png)!r}, Image.fromarray(images[0]), [images[0], {str(png)!r}]):
            predictor.predict(form, top_k=3)
        predictor.predict(np.zeros((40, 40, 3), np.uint8), resize=True)
        measure_latency(predictor, warmup=0, iters=1)
        print(json.dumps(predictor.predict({str(npy)!r}).class_ids.tolist()))
        assert "torch" not in sys.modules, "torch was imported"
        assert "onnx" not in sys.modules, "onnx was imported (not a dependency of the runtime)"
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == predictor.predict(images).class_ids.tolist()
