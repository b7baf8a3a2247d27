"""Prune a trained ResNet-18's channels, then fine-tune the slimmer model by distillation from the original.

What it achieves: ``--ratio 0.3`` keeps 40-352 channels per stage instead of
64-512, halving the multiply-accumulates per image (555 M → 250 M) and the
int8 latency on onnxruntime's CPU provider, and ten epochs of distillation
bring top-1 back near the teacher's (``benchmarks/pruning.py`` measures every
ratio; the README's "Prune for speed" table has the numbers).

The pruning is structured: whole output channels go, so the result is a dense
ResNet-18 of smaller widths (:class:`resnet_edge.model.Widths`) that any stage
rebuilds from the checkpoint, without the pruning library. Channels that a
residual addition joins must go together, across the stem, the identity and
projection shortcuts and every block of a stage; torch-pruning (Fang et al.,
"DepGraph", CVPR 2023) traces the model into exactly those groups and removes
each group's least important channels, ``ratio`` of them per group, rounded to
multiples of 8 so the int8 kernels keep whole vector lanes. The classifier keeps
its 10 outputs. Importance is the L1 norm of a group's weights (``l1``), or
the first-order Taylor estimate |w · ∂L/∂w| of what removing it costs on 512
training images (``taylor``).

Fine-tuning is the trainer's own run (:func:`resnet_edge.train.train`): the same
in-memory data pipeline, EMA, checkpoints, ``--resume`` (bitwise after a kill),
progress bar and ``metrics.jsonl``, with :class:`resnet_edge.distill.DistillationLoss`
against the unpruned teacher's logits on each augmented batch. The teacher is
any ResNet-18 file ``resnet-edge export`` reads by its layout (the CLI reads it and
hands over a :class:`Teacher`); each checkpoint
records what it was pruned from (file name and sha256), how, and its widths.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_edge.augment import normalize_batch, to_nchw
from resnet_edge.checkpoint import load_checkpoint, widths_of
from resnet_edge.cifar10 import CLASS_NAMES, MEAN, STD
from resnet_edge.data import Split
from resnet_edge.distributed import ranks_from_environment
from resnet_edge.errors import ResnetEdgeError
from resnet_edge.model import ResNet18, count_macs, count_parameters
from resnet_edge.prune_config import PruneConfig
from resnet_edge.run_folder import LAST
from resnet_edge.train import Student, train
from resnet_edge.train_config import TrainConfig

ROUND_TO = 8
TAYLOR_IMAGES = 512


@dataclass(frozen=True)
class Teacher:
    """The model to prune and learn from, and what identifies its file (read by ``export.model_file``)."""

    module: nn.Module
    source: str  # the file's name
    sha256: str
    format: str  # "resnet-edge", "kuangliu", "lightning", ...
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # what the file states, if anything


def prune_resnet18(model: ResNet18, ratio: float, importance: str = "l1",
                   examples: tuple[torch.Tensor, torch.Tensor] | None = None) -> ResNet18:
    """A new, smaller ResNet-18 holding ``model``'s most important channels (``model`` is left untouched).

    ``examples`` (normalized NCHW images and labels) feed the Taylor importance's gradients.
    """
    import torch_pruning as tp

    work = copy.deepcopy(model).float().eval()
    if importance == "taylor":
        if examples is None:
            raise ResnetEdgeError("the taylor importance needs example images for its gradients")
        scorer = tp.importance.TaylorImportance()
        work.zero_grad()
        images, labels = examples
        nn.functional.cross_entropy(work(images), labels).backward()
    else:
        scorer = tp.importance.MagnitudeImportance(p=1)
    if ratio > 0:
        pruner = tp.pruner.MetaPruner(work, torch.zeros(1, 3, 32, 32), importance=scorer, pruning_ratio=ratio,
                                      ignored_layers=[work.fc], round_to=ROUND_TO)
        pruner.step()
    # Rebuild from the widths: the result is a plain ResNet18, free of the pruner's hooks and attributes.
    pruned = ResNet18(work.fc.out_features, widths=work.widths())
    pruned.load_state_dict({name: tensor.detach() for name, tensor in work.state_dict().items()})
    return pruned.eval()


def taylor_examples(split: Split, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first :data:`TAYLOR_IMAGES` training images, normalized, and their labels."""
    images = to_nchw(torch.from_numpy(split.images[:TAYLOR_IMAGES]))
    return normalize_batch(images, mean, std), torch.from_numpy(split.labels[:TAYLOR_IMAGES])


def prune(teacher_file: Teacher, out_dir: str | Path, prune_config: PruneConfig, config: TrainConfig,
          train_split: Split, val_split: Split, *, device: str = "auto", resume: bool = False,
          explicit_options: set[str] | None = None, explicit_prune_options: set[str] | None = None,
          log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Prune the teacher and fine-tune the result by distillation in ``out_dir``; the last epoch's record.

    With ``resume``, continue the run in ``out_dir`` (same teacher file, same pruning) from its ``last.pt``.
    """
    out_dir = Path(out_dir)
    teacher = teacher_file.module
    if not isinstance(teacher, ResNet18):
        raise ResnetEdgeError(f"{teacher_file.source} loads as {type(teacher).__name__}; prune needs a ResNet-18 "
                              "file that resnet-edge reads by its layout (--model-def and pickled modules are not "
                              "supported, since the pruned model is rebuilt from its widths)")
    if teacher.fc.out_features != len(CLASS_NAMES):
        raise ResnetEdgeError(f"{teacher_file.source} has {teacher.fc.out_features} outputs; fine-tuning runs on "
                              f"CIFAR-10, so the model must have {len(CLASS_NAMES)}")
    mean, std = teacher_file.normalization or (MEAN, STD)
    last = out_dir / LAST
    if last.exists() and resume:
        saved = load_checkpoint(last)
        record = _check_same_pruning(saved, teacher_file.sha256, prune_config, explicit_prune_options or set(), last)
        widths, weights = widths_of(saved), None
        prune_config = PruneConfig(**{k: record[k] for k in asdict(prune_config)})
    elif last.exists():
        raise ResnetEdgeError(f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose "
                              "another --out")
    else:
        if prune_config.ratio is None:
            raise ResnetEdgeError(f"--ratio is required to start a pruning run (no {LAST} in {out_dir} to resume)")
        _check_ratio(teacher, prune_config.ratio)
        examples = taylor_examples(train_split, mean, std) if prune_config.importance == "taylor" else None
        student = prune_resnet18(teacher, prune_config.ratio, prune_config.importance, examples)
        widths, weights = student.widths(), student.state_dict()
        record = {
            **asdict(prune_config),
            "round_to": ROUND_TO,
            "source": teacher_file.source,
            "source_sha256": teacher_file.sha256,
            "source_format": teacher_file.format,
            "source_widths": teacher.widths().to_dict(),
            "source_parameters": count_parameters(teacher),
            "source_macs": count_macs(teacher),
            "parameters": count_parameters(student),
            "macs": count_macs(student),
            "library": f"torch-pruning {_library_version()}",
        }
        main_log = log if ranks_from_environment().is_main else (lambda line: None)
        main_log(f"pruned {teacher_file.source} by {prune_config.ratio:g} ({prune_config.importance}): "
            f"{record['source_parameters']:,} → {record['parameters']:,} parameters, "
            f"{record['source_macs'] / 1e6:.0f} M → {record['macs'] / 1e6:.0f} M MACs per image; "
            f"stage widths {list(widths.stages)}")
    plan = Student(widths=widths, weights=weights, teacher=teacher, temperature=prune_config.temperature,
                   kd_weight=prune_config.kd_weight, pruning=record, mean=tuple(mean), std=tuple(std))
    return train(config, train_split, val_split, out_dir, device=device, resume=resume,
                 explicit_options=explicit_options, log=log, progress=progress, student=plan)


def _check_ratio(teacher: ResNet18, ratio: float) -> None:
    """Refuse a ratio that would leave a group with no channels (kept counts round down to multiples of 8)."""
    widths = teacher.widths()
    narrowest = min(widths.stages + widths.inner)
    kept = int(narrowest * (1 - ratio))
    if kept < ROUND_TO:
        raise ResnetEdgeError(f"--ratio {ratio:g} keeps {kept} of the narrowest group's {narrowest} channels, under "
                              f"one multiple of {ROUND_TO}; expected a ratio <= {1 - ROUND_TO / narrowest:.3f}")


def _check_same_pruning(saved: dict[str, Any], sha256: str, config: PruneConfig, explicit: set[str],
                        path: Path) -> dict[str, Any]:
    """The saved run's pruning record, after refusing another teacher file or explicit options that differ."""
    record = saved.get("pruning")
    if not record:
        raise ResnetEdgeError(f"{path} is a training run, not a pruning run; resume it with 'resnet-edge train'")
    if record["source_sha256"] != sha256:
        raise ResnetEdgeError(f"the run in {path.parent} was pruned from {record['source']} (sha256 "
                              f"{record['source_sha256'][:12]}…), not this file; --resume needs the same teacher")
    for name in sorted(explicit):
        if getattr(config, name) != record[name]:
            raise ResnetEdgeError(f"--{name.replace('_', '-')} {getattr(config, name)} differs from the saved "
                                  f"run's {record[name]}; --resume continues the saved configuration")
    return record


def _library_version() -> str:
    from importlib.metadata import version

    return version("torch-pruning")
