"""The reference model shipped in the package: small, safe to load, and as accurate as its card says.

Nothing here selects or tunes anything on the test split: the model is fixed by
``scripts/publish_reference.py``; these tests check that what ships reproduces
the figures published with it.
"""

import json

import pytest
import torch

from resnet_edge.checkpoint import load_checkpoint, model_from_checkpoint
from resnet_edge.data import load_split
from resnet_edge.evaluate import evaluate_model
from resnet_edge.export import export_onnx
from resnet_edge.files import file_sha256
from resnet_edge.model import count_parameters
from resnet_edge.reference import (
    PRUNED_REFERENCE,
    REFERENCE_CHECKPOINT,
    REFERENCE_METRICS,
    REFERENCES,
    reference_card,
)


def test_reference_is_small_fp16_and_loads_as_fp32():
    assert REFERENCE_CHECKPOINT.stat().st_size <= 25 * 1024 * 1024
    payload = load_checkpoint(REFERENCE_CHECKPOINT)  # weights_only=True
    assert "optimizer" not in payload and "rng" not in payload
    floats = [t for t in payload["model"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    model = model_from_checkpoint(payload)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_card_records_how_the_model_was_made():
    card = reference_card()
    for key in ("command", "epochs", "val_top1", "test_top1", "wall_seconds", "hardware", "torch_version", "config"):
        assert key in card, key
    assert "resnet-edge train" in card["command"]
    assert card["checkpoint_sha256"] == file_sha256(REFERENCE_CHECKPOINT)
    records = [json.loads(line) for line in REFERENCE_METRICS.read_text().splitlines()]
    assert len(records) == card["epochs"]
    # best.pt was chosen on validation accuracy alone.
    assert max(records, key=lambda r: r["val_acc"])["epoch"] == card["best_epoch"]


def test_exported_reference_reaches_its_test_accuracy(full_data_dir, tmp_path):
    card = reference_card()
    model = tmp_path / "reference.onnx"
    export_onnx(REFERENCE_CHECKPOINT, model)
    report = evaluate_model(model, load_split("test", full_data_dir))
    # The card's figure comes from the PyTorch path; onnxruntime may flip the odd near-tie.
    assert report["images"] == 10_000
    assert report["top1"] == pytest.approx(card["test_top1"], abs=0.0015)


def test_pruned_reference_is_small_records_its_widths_and_its_source():
    pruned = REFERENCES[PRUNED_REFERENCE]
    assert pruned.checkpoint.stat().st_size <= 12 * 1024 * 1024
    payload = load_checkpoint(pruned.checkpoint)
    assert "optimizer" not in payload and "raw_model" not in payload
    assert payload["pruning"]["source_sha256"] == file_sha256(REFERENCE_CHECKPOINT)
    assert payload["pruning"]["ratio"] == 0.3
    model = model_from_checkpoint(payload)  # rebuilt from the recorded widths alone
    assert model.widths().to_dict() == payload["widths"]
    assert count_parameters(model) == payload["pruning"]["parameters"] < 11_173_962 / 2

    card = reference_card(PRUNED_REFERENCE)
    assert "resnet-edge prune" in card["command"] and card["checkpoint_sha256"] == file_sha256(pruned.checkpoint)
    assert card["wall_seconds"] <= 2 * 3600  # pruning plus fine-tuning within two hours on the machine it names
    records = [json.loads(line) for line in pruned.metrics.read_text().splitlines()]
    assert len(records) == card["epochs"]
    assert max(records, key=lambda r: r["val_acc"])["epoch"] == card["best_epoch"]
    assert card["int8_test_top1"] >= 0.930


def test_exported_pruned_reference_reaches_its_test_accuracy(full_data_dir, tmp_path):
    card = reference_card(PRUNED_REFERENCE)
    model = tmp_path / "pruned.onnx"
    export_onnx(REFERENCES[PRUNED_REFERENCE].checkpoint, model)
    report = evaluate_model(model, load_split("test", full_data_dir))
    assert report["top1"] == pytest.approx(card["test_top1"], abs=0.0015)
