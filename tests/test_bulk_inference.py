"""Bulk inference on a real local Ray cluster (``ray.init(num_cpus=2)``): same answers, nothing lost, one-line errors.

Every expected answer is a single-process ``Predictor`` over the same model and images; rows are joined on
their id (Ray does not keep order).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from resnet_edge.cli import main  # noqa: E402
from resnet_edge.data import load_sample  # noqa: E402
from resnet_edge.runtime import Predictor  # noqa: E402
from resnet_edge.runtime.distributed import predict_dataset  # noqa: E402
from resnet_edge.runtime.ray_inputs import read_input  # noqa: E402

ACTOR_TITLE = "MapBatches(BatchPredictor)"  # Ray names each actor process "ray::MapWorker(<operator>)"


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def int8_model(reference_int8) -> Path:
    return reference_int8.output


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bulk") / "sample.npy"
    np.save(path, load_sample("test").images)
    return path


def by_id(path: Path, key: str = "id") -> dict:
    rows = pq.read_table(path).to_pylist()
    ids = [row[key] for row in rows]
    assert len(ids) == len(set(ids)), "an input came out more than once"
    return {row[key]: row for row in rows}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_predict_many_gives_the_predictor_answers_row_for_row(local_cluster, int8_model, sample_file, tmp_path):
    images = load_sample("test").images
    expected = Predictor(int8_model).predict(images, top_k=3)
    output = tmp_path / "scores.parquet"
    result = invoke("predict-many", int8_model, sample_file, "-o", output, "--top-k", 3, "--batch-size", 100)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "1000 rows (0 unreadable)" in result.output
    rows = by_id(output)
    assert sorted(rows) == list(range(len(images)))
    assert [rows[i]["class_id"] for i in range(len(images))] == expected.class_ids.tolist()
    assert [rows[i]["top_k_names"] for i in range(len(images))] == expected.top_k_names
    assert np.allclose([rows[i]["top_k_probabilities"] for i in range(len(images))], expected.top_k_probabilities)
    assert {row["error"] for row in rows.values()} == {""}


def test_image_folder_and_parquet_inputs_report_bad_images_instead_of_dropping_them(local_cluster, int8_model,
                                                                                    tmp_path):
    from PIL import Image

    images = load_sample("test").images[:12]
    folder = tmp_path / "frames"
    for i, image in enumerate(images):
        (folder / f"cam{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"cam{i % 3}" / f"{i:03d}.png")
    (folder / "cam0" / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(folder / "cam1" / "small.png")
    expected = Predictor(int8_model).predict(images).class_ids

    output = tmp_path / "folder.parquet"
    result = invoke("predict-many", int8_model, folder, "-o", output)
    assert result.exit_code == 0, result.output
    assert "14 rows (2 unreadable)" in result.output
    rows = by_id(output, "path")
    assert rows["cam0/broken.png"]["class_id"] == -1 and "cam0/broken.png" in rows["cam0/broken.png"]["error"]
    assert rows["cam1/small.png"]["class_id"] == -1 and "28x28" in rows["cam1/small.png"]["error"]
    assert [rows[f"cam{i % 3}/{i:03d}.png"]["class_id"] for i in range(12)] == expected.tolist()

    # The same images as PNG bytes in a Parquet file, beside an id column.
    import pyarrow as pa
    files = sorted(folder.rglob("*.png"))
    table = pa.table({"id": [str(p.relative_to(folder)) for p in files], "image": [p.read_bytes() for p in files]})
    pq.write_table(table, tmp_path / "frames.parquet")
    output2 = tmp_path / "from_parquet.parquet"
    assert invoke("predict-many", int8_model, tmp_path / "frames.parquet", "-o", output2).exit_code == 0
    again = by_id(output2)
    assert {key: row["class_id"] for key, row in again.items()} == {key: row["class_id"] for key, row in rows.items()}

    # --resize scales the small image as the Predictor does; the broken one is still reported.
    resized = tmp_path / "resized.parquet"
    assert invoke("predict-many", int8_model, folder, "-o", resized, "--resize").exit_code == 0
    rows = by_id(resized, "path")
    small = Predictor(int8_model).predict(np.zeros((28, 28, 3), np.uint8), resize=True).class_ids[0]
    assert rows["cam1/small.png"]["class_id"] == small and rows["cam1/small.png"]["error"] == ""
    assert rows["cam0/broken.png"]["class_id"] == -1

    # --strict refuses instead, and leaves the earlier output as it was.
    before = output.read_bytes()
    result = invoke("predict-many", int8_model, folder, "-o", output, "--strict", "--overwrite")
    assert result.exit_code == 1 and "--strict" in result.output
    assert output.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".folder.parquet")] == []


def actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ACTOR_TITLE in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:  # the process ended while we looked
                pass
    return pids


def test_a_killed_actor_loses_and_duplicates_nothing(local_cluster, int8_model, sample_file):
    images = load_sample("test").images
    expected = Predictor(int8_model).predict(images).class_ids
    source = read_input(sample_file, block_rows=50)
    batches = iter(predict_dataset(source.dataset, str(int8_model), batch_size=50, concurrency=2).iter_batches(
        batch_size=None, batch_format="numpy"))
    seen = [next(batches)]  # the run is under way: an actor exists and most blocks are still to do
    victims = actor_pids()
    assert victims, "found no actor process to kill"
    os.kill(victims[0], signal.SIGKILL)
    seen += list(batches)
    assert not Path(f"/proc/{victims[0]}").exists() or victims[0] not in actor_pids()
    ids = np.concatenate([batch["id"] for batch in seen])
    classes = np.concatenate([batch["class_id"] for batch in seen])
    assert sorted(ids.tolist()) == list(range(len(images))), "an input was lost or repeated"
    assert np.array_equal(classes[np.argsort(ids)], expected)


def test_user_errors_are_one_line(local_cluster, int8_model, sample_file, tmp_path, onnx_model):
    output = tmp_path / "out.parquet"
    output.write_bytes(b"an earlier result")
    (empty := tmp_path / "empty").mkdir()
    for args, fragment in [
        ((int8_model, sample_file, "-o", output), "exists; pass --overwrite"),
        ((int8_model, tmp_path / "nowhere", "-o", tmp_path / "x.parquet"), "input not found"),
        ((int8_model, tmp_path, "-o", tmp_path / "x.parquet"), "cannot read"),  # out.parquet is not Parquet
        ((int8_model, empty, "-o", tmp_path / "x.parquet"), "holds no image files"),
        ((int8_model, sample_file, "-o", tmp_path / "x.parquet", "--top-k", 11), "top_k must be between 1 and 10"),
    ]:
        result = invoke("predict-many", *args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.output
    assert output.read_bytes() == b"an earlier result"
    bare = tmp_path / "bare.onnx"
    import onnx
    model = onnx.load(str(onnx_model))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    result = invoke("predict-many", bare, sample_file, "-o", tmp_path / "y.parquet")
    assert result.exit_code == 1 and "lacks resnet-edge metadata" in result.output


def test_full_test_split_agrees_with_the_predictor(local_cluster, int8_model, full_data_dir, tmp_path):
    from resnet_edge.data import load_split

    test = load_split("test", full_data_dir)
    expected = Predictor(int8_model).predict(test.images).class_ids
    output = tmp_path / "test.parquet"
    result = invoke("predict-many", int8_model, full_data_dir, "-o", output)
    assert result.exit_code == 0, result.output
    rows = by_id(output)
    assert len(rows) == 10_000
    assert [rows[i]["class_id"] for i in range(10_000)] == expected.tolist()
    assert [rows[i]["label"] for i in range(10_000)] == test.labels.tolist()
