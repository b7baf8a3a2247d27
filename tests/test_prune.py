"""resnet-edge prune: the pruned graph stays a valid, coupled ResNet-18; distillation's loss; export without the library."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from independent import normalized
from resnet_edge.checkpoint import load_checkpoint
from resnet_edge.cli import main
from resnet_edge.data import load_sample
from resnet_edge.distill import DistillationLoss
from resnet_edge.export import export_onnx
from resnet_edge.files import file_sha256
from resnet_edge.metadata import KEY_PROVENANCE
from resnet_edge.model import STAGE_WIDTHS, ResNet18, Widths, count_parameters
from resnet_edge.prune import prune_resnet18
from resnet_edge.reference import reference_checkpoint

TINY = ["--sample", "--limit-train", "192", "--batch-size", "64", "--no-progress", "--device", "cpu"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def marked_model():
    """An untrained ResNet-18 whose every BatchNorm scale is distinct, so each channel can be traced after pruning."""
    torch.manual_seed(0)
    model = ResNet18()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.randperm(module.num_features).float() + 1.0
            module.running_mean.uniform_(-0.5, 0.5)
    return model.eval()


def _kept(pruned_bn: torch.nn.BatchNorm2d, original_bn: torch.nn.BatchNorm2d) -> list[int]:
    """Which of the original channels a pruned BatchNorm kept, found by its (distinct) scales."""
    return [int(torch.nonzero(original_bn.weight == w)[0]) for w in pruned_bn.weight]


def _blocks(model: ResNet18):
    return [(s, b) for s, stage in enumerate((model.layer1, model.layer2, model.layer3, model.layer4))
            for b in stage]


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_pruning_keeps_a_valid_coupled_resnet18_at_each_ratio(marked_model, ratio):
    pruned = prune_resnet18(marked_model, ratio)
    # Each group keeps (1 - ratio) of its channels, rounded down to a multiple of 8.
    expected = [int(w * (1 - ratio)) // 8 * 8 for w in STAGE_WIDTHS]
    assert pruned.widths() == Widths(expected[0], tuple(expected), tuple(w for w in expected for _ in range(2)))
    assert count_parameters(marked_model) == 11_173_962  # the original is untouched

    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert pruned(x).shape == (3, 10)

    # Residual couplings: every tensor that a shortcut adds to another keeps the same channels, in order.
    stage_channels = {0: _kept(pruned.bn1, marked_model.bn1)}
    for (s, block), (_, original) in zip(_blocks(pruned), _blocks(marked_model)):
        out = _kept(block.bn2, original.bn2)
        stage_channels.setdefault(s, out)
        assert out == stage_channels[s], f"stage {s + 1}: a block keeps other channels than its stage's"
        if isinstance(original.shortcut, torch.nn.Sequential):
            assert _kept(block.shortcut[1], original.shortcut[1]) == out
    # And every weight is the original's, restricted to the kept input and output channels.
    previous = stage_channels[0]
    assert torch.equal(pruned.conv1.weight, marked_model.conv1.weight[previous])
    for (s, block), (_, original) in zip(_blocks(pruned), _blocks(marked_model)):
        inner, out = _kept(block.bn1, original.bn1), stage_channels[s]
        assert torch.equal(block.conv1.weight, original.conv1.weight[inner][:, previous])
        assert torch.equal(block.conv2.weight, original.conv2.weight[out][:, inner])
        if isinstance(original.shortcut, torch.nn.Sequential):
            assert torch.equal(block.shortcut[0].weight, original.shortcut[0].weight[out][:, previous])
        previous = out
    assert torch.equal(pruned.fc.weight, marked_model.fc.weight[:, previous])
    assert torch.equal(pruned.fc.bias, marked_model.fc.bias)


def test_taylor_importance_prunes_to_the_same_widths(marked_model):
    sample = load_sample("train")
    images = torch.from_numpy(normalized(sample.images[:64]))
    pruned = prune_resnet18(marked_model, 0.5, "taylor", (images, torch.from_numpy(sample.labels[:64])))
    assert pruned.widths().stages == (32, 64, 128, 256)
    assert all(p.grad is None for p in marked_model.parameters())  # gradients went to a copy


def test_widths_refuse_what_a_residual_addition_cannot_join():
    with pytest.raises(ValueError, match="stem width 48 must equal stage 1's 40"):
        Widths(48, (40, 88, 176, 352), (40,) * 8)
    with pytest.raises(ValueError, match="4 stage widths and 8 inner widths"):
        Widths(64, (64, 128), (64,) * 8)


def test_distillation_loss_on_hand_built_logits():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([1, 0])
    t, w, smoothing = 2.0, 0.75, 0.1

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    expected = 0.0
    for s_row, t_row, label in zip(student.tolist(), teacher.tolist(), labels.tolist()):
        p_t = softmax([v / t for v in t_row])
        p_s = softmax([v / t for v in s_row])
        kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        # Label smoothing: the target is (1 - ε) on the label plus ε spread evenly over all 3 classes.
        target = [smoothing / 3 + (1 - smoothing) * (k == label) for k in range(3)]
        ce = -sum(q * math.log(p) for q, p in zip(target, softmax(s_row)))
        expected += (w * t * t * kl + (1 - w) * ce) / len(labels)

    loss = DistillationLoss(temperature=t, kd_weight=w, label_smoothing=smoothing)(student, labels, teacher)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # A student that matches its teacher owes only the label term.
    same = DistillationLoss(temperature=t, kd_weight=w)(teacher, labels, teacher)
    assert same.item() == pytest.approx((1 - w) * torch.nn.functional.cross_entropy(teacher, labels).item(), rel=1e-6)


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """The reference model pruned by 0.5 and fine-tuned for one short epoch on the sample, through the CLI."""
    out = tmp_path_factory.mktemp("pruned")
    result = CliRunner().invoke(main, ["prune", str(reference_checkpoint()), "--out", str(out), "--ratio", "0.5",
                                       "--epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    half = ResNet18(widths=Widths(32, (32, 64, 128, 256), (32, 32, 64, 64, 128, 128, 256, 256)))
    assert f"11,173,962 → {count_parameters(half):,} parameters" in result.output
    return out


def test_a_pruned_checkpoint_round_trips_through_export_with_parity(pruned_run, tmp_path):
    payload = load_checkpoint(pruned_run / "best.pt")
    assert payload["widths"]["stages"] == [32, 64, 128, 256]
    assert payload["pruning"]["source_sha256"] == file_sha256(reference_checkpoint())
    # export rebuilds the model from the recorded widths alone: block torch_pruning from being imported at all.
    output = tmp_path / "pruned.onnx"
    script = ("import sys; sys.modules['torch_pruning'] = None\n"
              "from resnet_edge.cli import main\n"
              f"main(['export', {str(pruned_run / 'best.pt')!r}, '--output', {str(output)!r}])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pruned by 0.5 from resnet18_cifar10.pt" in done.stdout

    # Parity against the weights themselves, loaded into a model built here from the recorded widths.
    model = ResNet18(widths=Widths.from_dict(payload["widths"]))
    model.load_state_dict({k: v.float() for k, v in payload["model"].items()})
    images = normalized(load_sample("test").images[:64])
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    actual = session.run(["logits"], {"input": images})[0]
    np.testing.assert_allclose(actual, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    provenance = json.loads(session.get_modelmeta().custom_metadata_map[KEY_PROVENANCE])
    assert provenance["pruned_from"] == "resnet18_cifar10.pt"
    assert provenance["pruned_from_sha256"] == file_sha256(reference_checkpoint())
    assert json.loads(provenance["pruning"])["ratio"] == 0.5


def test_prune_refuses_to_resume_with_another_ratio(pruned_run):
    result = CliRunner().invoke(main, ["prune", str(reference_checkpoint()), "--out", str(pruned_run), "--ratio", "0.3",
                                       "--epochs", "1", "--resume", *TINY])
    assert result.exit_code == 1
    assert "--ratio 0.3 differs from the saved run's 0.5" in result.output
    assert "Traceback" not in result.output


def test_train_refuses_to_resume_a_pruning_run(pruned_run):
    result = CliRunner().invoke(main, ["train", "--out", str(pruned_run), "--resume", *TINY])
    assert result.exit_code == 1 and "is a pruning run; resume it with 'resnet-edge prune" in result.output
    assert "Traceback" not in result.output


def test_prune_refuses_a_ratio_that_leaves_no_channels(tmp_path):
    result = CliRunner().invoke(main, ["prune", str(reference_checkpoint()), "--out", str(tmp_path), "--ratio", "0.9",
                                       *TINY])
    assert result.exit_code == 1
    assert "--ratio 0.9 keeps 6 of the narrowest group's 64 channels" in result.output
    assert "Traceback" not in result.output


def _prune(out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "resnet_edge", "prune", str(reference_checkpoint()), "--ratio", "0.7",
                             "--epochs", "2", "--seed", "3", *TINY, "--limit-train", "128", "--out", str(out_dir),
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_prune_resume_after_sigkill_continues_bitwise(tmp_path):
    straight = _prune(tmp_path / "straight")
    output = straight.communicate(timeout=TIMEOUT)[0]
    assert straight.returncode == 0, output

    victim = _prune(tmp_path / "killed")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + TIMEOUT
    while not (metrics.is_file() and metrics.read_text().strip()):  # the first epoch is saved
        assert victim.poll() is None, victim.stdout.read()
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "pruning ended before the kill: nothing was interrupted"
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"]
    assert saved == 1, f"last.pt holds epoch {saved} of 2: the kill did not land mid-run"

    resumed = _prune(tmp_path / "killed", "--resume")
    output = resumed.communicate(timeout=TIMEOUT)[0]
    assert resumed.returncode == 0, output
    assert "at epoch 2/2" in output and "pruned resnet18" not in output  # no second pruning

    expected = load_checkpoint(tmp_path / "straight" / "last.pt")
    actual = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert actual["epoch"] == 2 and actual["widths"] == expected["widths"]
    for weights in ("model", "raw_model"):
        for name, tensor in expected[weights].items():
            assert torch.equal(tensor, actual[weights][name]), f"{weights} {name} differs after resume"
    timing = ("img_per_s", "seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in expected["metrics"]] == \
        [{k: v for k, v in r.items() if k not in timing} for r in actual["metrics"]]
