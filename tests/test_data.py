import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from resnet_edge.cifar10 import CLASS_NAMES
from resnet_edge.data import (
    BATCHES_FOLDER,
    EXPECTED_FILES,
    SAMPLE_PATH,
    default_data_dir,
    load_sample,
    load_split,
    load_train_val,
)
from resnet_edge.errors import DataError


def _batches(data_dir: Path) -> Path:
    return data_dir if data_dir.name == BATCHES_FOLDER else data_dir / BATCHES_FOLDER


@pytest.fixture(scope="module")
def full_train(full_data_dir):
    return load_split("trainval", full_data_dir)


@pytest.fixture(scope="module")
def full_test(full_data_dir):
    return load_split("test", full_data_dir)


def test_full_training_set(full_train):
    assert full_train.images.shape == (50_000, 32, 32, 3)
    assert full_train.images.dtype == np.uint8
    assert full_train.images.flags["C_CONTIGUOUS"]
    assert full_train.labels.dtype == np.int64
    assert np.bincount(full_train.labels).tolist() == [5_000] * 10
    assert full_train.images.min() == 0 and full_train.images.max() == 255
    # Known facts of the official release: first labels and per-channel means.
    assert full_train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert np.allclose(full_train.images.reshape(-1, 3).mean(0), [125.307, 122.950, 113.865], atol=1e-2)


def test_full_test_set(full_test):
    assert full_test.images.shape == (10_000, 32, 32, 3)
    assert np.bincount(full_test.labels).tolist() == [1_000] * 10
    assert full_test.images.dtype == np.uint8


def test_validation_hold_out_is_balanced_disjoint_and_deterministic(full_data_dir, full_train):
    train, val = load_train_val(full_data_dir)
    assert len(train) == 48_000 and len(val) == 2_000
    assert np.bincount(val.labels).tolist() == [200] * 10
    # Together they are exactly the training set, each image once.
    together = np.concatenate([train.images, val.images]).reshape(50_000, -1)
    assert len(np.unique(together, axis=0)) == 50_000
    _, val_again = load_train_val(full_data_dir)
    assert np.array_equal(val.images, val_again.images)


def test_data_dir_may_be_the_batches_folder_or_its_parent(full_data_dir):
    batches = _batches(full_data_dir)
    a = load_split("test", batches)
    b = load_split("test", batches.parent)
    assert np.array_equal(a.labels, b.labels)


def test_default_data_dir_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_EDGE_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("RESNET_EDGE_DATA")
    assert default_data_dir() == Path("~/.cache/resnet-edge/cifar10")


def _copy_of_real_data(full_data_dir: Path, tmp_path: Path, replace: dict[str, bytes]) -> Path:
    """A cifar-10-batches-py folder of symlinks to the real files, with some files replaced."""
    folder = tmp_path / BATCHES_FOLDER
    folder.mkdir()
    for name in EXPECTED_FILES:
        if name in replace:
            (folder / name).write_bytes(replace[name])
        else:
            (folder / name).symlink_to(_batches(full_data_dir) / name)
    return folder


def test_corrupt_file_is_named_and_refused(full_data_dir, tmp_path):
    original = (_batches(full_data_dir) / "data_batch_3").read_bytes()
    corrupted = original[:1000] + bytes([original[1000] ^ 0xFF]) + original[1001:]
    folder = _copy_of_real_data(full_data_dir, tmp_path, {"data_batch_3": corrupted})
    with pytest.raises(DataError, match=r"corrupt: md5 of data_batch_3 does not match"):
        load_split("train", folder)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_tampered_pickle_never_runs(full_data_dir, tmp_path):
    marker = tmp_path / "pickle-ran"
    folder = _copy_of_real_data(full_data_dir, tmp_path, {"data_batch_1": pickle.dumps(_Payload(marker))})
    with pytest.raises(DataError, match="data_batch_1"):
        load_split("trainval", folder)
    assert not marker.exists()


def test_missing_files_are_listed(full_data_dir, tmp_path):
    folder = _copy_of_real_data(full_data_dir, tmp_path, {})
    (folder / "test_batch").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(DataError, match="incomplete: missing test_batch, batches.meta"):
        load_split("test", folder)


def test_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError) as info:
        load_split("test", tmp_path / "nowhere")
    message = str(info.value)
    assert "not found" in message and "data_batch_1" in message and "\n" not in message


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    # A closed local port stands in for "no internet", whatever the machine's network.
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="could not download CIFAR-10") as info:
        load_split("test", tmp_path, download=True)
    assert "\n" not in str(info.value)


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split("dev")


def test_builtin_sample_is_balanced_small_and_traceable():
    assert SAMPLE_PATH.stat().st_size <= 8 * 1024 * 1024
    manifest = json.loads(SAMPLE_PATH.with_suffix(".json").read_text())
    assert manifest["class_names"] == list(CLASS_NAMES)
    expected = {"train": 1_000, "val": 500, "test": 1_000}
    with np.load(SAMPLE_PATH, allow_pickle=False) as archive:
        for split, count in expected.items():
            sample = load_sample(split)
            assert sample.images.shape == (count, 32, 32, 3) and sample.images.dtype == np.uint8
            assert np.bincount(sample.labels).tolist() == [count // 10] * 10
            assert archive[f"{split}_source_indices"].tolist() == manifest["source_indices"][split]


def test_builtin_sample_matches_the_real_data(full_train, full_test):
    with np.load(SAMPLE_PATH, allow_pickle=False) as archive:
        for split, full in (("train", full_train), ("val", full_train), ("test", full_test)):
            idx = archive[f"{split}_source_indices"]
            assert np.array_equal(archive[f"{split}_images"], full.images[idx])
            assert np.array_equal(archive[f"{split}_labels"], full.labels[idx])
    with np.load(SAMPLE_PATH, allow_pickle=False) as archive:
        from resnet_edge.data import val_indices

        held_out = set(val_indices(full_train.labels).tolist())
        assert held_out.isdisjoint(archive["train_source_indices"].tolist())
        assert held_out.issuperset(archive["val_source_indices"].tolist())
