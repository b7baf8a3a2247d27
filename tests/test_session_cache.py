"""The optimized-graph cache never serves a stale graph: a changed model file or level gets the right answers.

Each test first proves the cache serves the unchanged file (``from_cache``), then changes the file the way users
do (a new file moved over it, an in-place rewrite of the same size, one that restores the old modification time)
or asks for another optimization level, and compares against an uncached Predictor of the same file and level,
which loads the graph straight from the model. The second model has the trained model's final layer with its
class rows reversed: the same size byte for byte, and logits that are the first model's in reverse class order.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from resnet_edge.data import load_sample
from resnet_edge.metadata import OUTPUT_NAME
from resnet_edge.runtime import Predictor


@pytest.fixture(scope="module")
def images():
    return load_sample("test").images[:8]


@pytest.fixture(scope="module")
def reversed_classes(onnx_model, tmp_path_factory):
    """``onnx_model`` with the rows of its final Gemm (weight and bias) in reverse class order."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_model))
    (gemm,) = [node for node in proto.graph.node if OUTPUT_NAME in node.output]
    assert gemm.op_type == "Gemm"
    for initializer in proto.graph.initializer:
        if initializer.name in gemm.input[1:]:
            values = numpy_helper.to_array(initializer)
            initializer.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(values[::-1]), initializer.name))
    path = tmp_path_factory.mktemp("reversed") / "reversed.onnx"
    onnx.save(proto, str(path))
    assert path.stat().st_size == onnx_model.stat().st_size  # same size: only the key's other parts differ
    return path


@pytest.fixture(scope="module")
def logits_of(images):
    """Logits of an uncached Predictor: the graph optimized from the model file itself."""
    def run(path, optimization="all"):
        return Predictor(path, optimization=optimization).logits(images)
    return run


def test_the_second_model_answers_otherwise(onnx_model, reversed_classes, logits_of):
    first, second = logits_of(onnx_model), logits_of(reversed_classes)
    assert np.allclose(second, first[:, ::-1], atol=1e-5)  # computed from the first model, not the cache
    assert not np.array_equal(second.argmax(axis=1), first.argmax(axis=1))


def cached_twice(path, cache, images, optimization="all"):
    """Start cached twice: the first start writes the entry, the second must be served by it."""
    assert not Predictor(path, optimization=optimization, cache_dir=cache).from_cache
    served = Predictor(path, optimization=optimization, cache_dir=cache)
    assert served.from_cache
    return served.logits(images)


@pytest.mark.parametrize("change", ["replace", "rewrite-in-place", "rewrite-keeping-mtime"])
def test_a_changed_model_file_is_never_served_from_the_cache(change, onnx_model, reversed_classes, logits_of,
                                                              images, tmp_path):
    model, cache = tmp_path / "model.onnx", tmp_path / "cache"
    shutil.copyfile(onnx_model, model)
    stale = cached_twice(model, cache, images)
    assert np.array_equal(stale, logits_of(model))
    before = model.stat()

    if change == "replace":  # a new file moved over the old one (what atomic writers do): a new inode
        shutil.copyfile(reversed_classes, tmp_path / "new.onnx")
        os.replace(tmp_path / "new.onnx", model)
        assert model.stat().st_ino != before.st_ino
    else:  # the same inode and size, new bytes (cp onto an existing file, rsync --inplace)
        with open(model, "r+b") as handle:
            handle.write(reversed_classes.read_bytes())
        if change == "rewrite-keeping-mtime":  # cp -p, rsync -t, tar restore the old mtime; only ctime moves
            os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
            assert model.stat().st_mtime_ns == before.st_mtime_ns
        assert (model.stat().st_ino, model.stat().st_size) == (before.st_ino, before.st_size)

    expected = logits_of(model)  # uncached, same file and level
    assert np.allclose(expected, stale[:, ::-1], atol=1e-5)  # the file now holds the second model
    restarted = Predictor(model, cache_dir=cache)
    got = restarted.logits(images)
    assert not np.allclose(got, stale, atol=1e-3)  # what a stale entry would have answered
    assert np.array_equal(got, expected)
    assert not restarted.from_cache
    again = Predictor(model, cache_dir=cache)  # the entry written for the new file serves the next start
    assert again.from_cache and np.array_equal(again.logits(images), expected)


def test_each_optimization_level_gets_its_own_entry(onnx_model, logits_of, images, tmp_path):
    model, cache = tmp_path / "model.onnx", tmp_path / "cache"
    shutil.copyfile(onnx_model, model)
    got, entries = {}, []
    for level in ("all", "basic", "extended"):  # "all" first, so the others could be served its graph
        got[level] = cached_twice(model, cache, images, optimization=level)  # the first start is not from_cache
        assert np.array_equal(got[level], logits_of(model, level)), level  # as uncached at the same level
        entries.append(len(list(cache.iterdir())))
    assert entries == [1, 2, 3]
    # What a stale entry would answer: "all" fuses into x86 NCHWc kernels that round differently from "basic"
    # (4e-8 here); where a CPU computes both alike, from_cache above is what tells the levels apart.
    if not np.array_equal(logits_of(model, "all"), logits_of(model, "basic")):
        assert not np.array_equal(got["basic"], logits_of(model, "all"))
