import threading

import numpy as np
import pytest

from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import load_sample
from resnet_edge.errors import MetadataError
from resnet_edge.runtime import Predictor, measure_latency, normalize
from resnet_edge.runtime.images import read_image_file


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


def test_large_batches_are_chunked_in_order(onnx_model, images):
    whole = Predictor(onnx_model).logits(images)
    chunked = Predictor(onnx_model, chunk_size=5).logits(images)
    assert np.allclose(whole, chunked, atol=1e-5)


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

    first = Predictor(onnx_model, cache_dir=tmp_path / "cache")
    second = Predictor(onnx_model, cache_dir=tmp_path / "cache")
    assert not first.from_cache and second.from_cache
    assert len(list((tmp_path / "cache").iterdir())) == 1
    assert second.metadata == first.metadata
    assert np.allclose(second.predict(images).probabilities, reference, atol=1e-5)


def test_raw_input_model_takes_pixels_and_matches_the_normalized_one(trained_run, onnx_model, images, tmp_path):
    from resnet_edge.export import export_onnx

    raw_path = tmp_path / "raw.onnx"
    result = export_onnx(trained_run / "best.pt", raw_path, raw_input=True)
    assert result.parity.passed and result.metadata.input_layout == "NHWC_UINT8"
    raw = Predictor(raw_path)
    assert raw.metadata.raw_input and raw.session.get_inputs()[0].type == "tensor(uint8)"
    expected = Predictor(onnx_model).predict(images)
    got = raw.predict(images)
    assert np.array_equal(got.class_ids, expected.class_ids)
    assert np.allclose(got.probabilities, expected.probabilities, atol=1e-5)
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
    with pytest.raises(ValueError, match="threads must be at least 1"):
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


def test_latency_measurement(predictor):
    stats = measure_latency(predictor, batch_size=4, warmup=2, iters=10)
    assert stats.batch_size == 4 and stats.iters == 10
    assert 0 < stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.images_per_second > 0
    with pytest.raises(ValueError, match="need batch_size >= 1"):
        measure_latency(predictor, batch_size=0)


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


def test_bench_compares_models_and_engines_in_separate_processes(onnx_model, trained_run, tmp_path):
    import json

    from click.testing import CliRunner

    from resnet_edge.cli import main

    save, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(main, [
        "bench", str(onnx_model), str(trained_run / "best.pt"), "--batch-size", "1,4", "--threads", "1",
        "--iters", "5", "--warmup", "1", "--save", str(save), "--plot", str(plot),
    ])
    assert result.exit_code == 0, result.output
    results = json.loads(save.read_text())["results"]
    assert [(r["engine"], r["batch_size"]) for r in results] == \
        [("onnxruntime", 1), ("onnxruntime", 4), ("torch", 1), ("torch", 4)]
    assert all(r["threads"] == 1 and r["peak_rss_mb"] > 0 for r in results)
    assert results[0]["p50_ratio"] == 1.0 and results[2]["p50_ratio"] > 0
    # torch's process holds torch; onnxruntime's does not, so each was measured alone.
    assert results[2]["peak_rss_mb"] > results[0]["peak_rss_mb"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "p50 vs first" in result.output


def test_openvino_runs_the_same_onnx_file_as_onnxruntime(onnx_model, images):
    pytest.importorskip("openvino")
    from resnet_edge.engines import load_engine

    from resnet_edge.runtime.session import read_metadata

    ours, _ = load_engine("onnxruntime", onnx_model, 12, 1)
    theirs, precision = load_engine("openvino", onnx_model, 12, 1, read_metadata(onnx_model))
    assert precision == "fp32"
    assert np.allclose(ours(images), theirs(images), atol=1e-4)
