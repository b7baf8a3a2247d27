"""Weights of a CIFAR ResNet-18 saved by other code, renamed into ``resnet_edge.model.ResNet18`` by declared tables.

The same network has different tensor names in each code base; the renames are
written out below, one table per layout, and nothing is inferred from tensor
order. Where the weights sit in the file (``module.`` from DataParallel/DDP,
``_orig_mod.`` from ``torch.compile``, ``model.``/``net.`` in a LightningModule)
is found from one declared anchor: the prefix is whatever precedes the stem
convolution ``conv1.weight`` (the only 3-input-channel convolution).

After renaming, the file must hold exactly our tensors with our shapes: a
missing or extra tensor, or one of another shape, is an error naming it. The one
exception is BatchNorm's ``num_batches_tracked`` counter, which files from
before PyTorch 0.4.1 lack and which inference never reads. What a state_dict
cannot tell is whether the max-pool of a torchvision ``resnet18`` was removed
(it has no weights); a 3×3 ``conv1`` is taken as the CIFAR stem with no
max-pool, the sanity accuracy check catches a model that kept it, and
``--model-def`` exports such a model as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from resnet_edge.errors import ExportError, key_mismatch, name_list
from resnet_edge.model import BLOCKS_PER_STAGE, STAGE_WIDTHS, ResNet18

if TYPE_CHECKING:
    from torch import Tensor

STEM = "conv1.weight"
CLASSIFIER_WEIGHTS = ("fc.weight", "linear.weight")
_COUNTER = "num_batches_tracked"


@dataclass(frozen=True)
class Layout:
    """One code base's names for ResNet-18's tensors: regex renames from theirs to ours, applied in order."""

    name: str
    description: str
    renames: tuple[tuple[str, str], ...]

    def our_name(self, key: str) -> str:
        for pattern, replacement in self.renames:
            key = re.sub(pattern, replacement, key)
        return key


LAYOUTS = (
    Layout("resnet-edge", "resnet-edge ResNet18", ()),
    # github.com/kuangliu/pytorch-cifar models/resnet.py: our names, but the classifier is "linear".
    Layout("kuangliu", "kuangliu/pytorch-cifar ResNet18", ((r"^linear\.", "fc."),)),
    # torchvision.models.resnet18 (and timm's resnet18, which keeps its names): projection shortcuts are
    # "downsample", the rest (conv1, bn1, layerN.M.conv1/bn1/conv2/bn2, fc) is ours.
    Layout("torchvision", "torchvision/timm resnet18 (CIFAR stem)", ((r"^(layer\d\.\d+)\.downsample\.", r"\1.shortcut."),)),
)


@dataclass(frozen=True)
class Mapped:
    model: ResNet18
    layout: Layout
    prefix: str
    ignored: tuple[str, ...]  # tensors outside the prefix that were left out (allowed only when asked)


def stem_prefixes(state: dict[str, Tensor], anchor: str = STEM) -> list[str]:
    """Every prefix under which ``anchor`` names a 3-input-channel convolution weight."""
    prefixes = []
    for key, tensor in state.items():
        if key.endswith(anchor) and (key == anchor or key[-len(anchor) - 1] == "."):
            if getattr(tensor, "ndim", 0) == 4 and tensor.shape[1] == 3:
                prefixes.append(key[: -len(anchor)])
    return prefixes


def choose_prefix(state: dict[str, Tensor], prefix: str | None, source: str) -> str:
    """The given prefix (checked), or the single one the stem anchor finds."""
    if prefix is not None:
        if not any(key.startswith(prefix) for key in state):
            raise ExportError(f"no tensor in {source} starts with --prefix {prefix!r}; its names begin "
                              f"{name_list(sorted({key.split('.')[0] + '.' for key in state}))}")
        return prefix
    found = stem_prefixes(state)
    if not found:
        raise ExportError(
            f"{source} has no stem convolution '{STEM}' with 3 input channels among its {len(state)} tensors "
            f"({name_list(list(state))}); expected a ResNet-18 state_dict, or pass --model-def FILE.py:NAME "
            "for an architecture with other names")
    if len(found) > 1:
        raise ExportError(f"{source} holds {len(found)} networks (prefixes {', '.join(map(repr, found))}); "
                          "choose one with --prefix")
    return found[0]


def to_resnet18(state: dict[str, Tensor], source: str, *, prefix: str | None = None,
                ignore_outside_prefix: bool = False) -> Mapped:
    """Our ResNet-18 (fp32, eval) holding ``state``'s weights, found under ``prefix`` and renamed by a layout."""
    import torch

    prefix = choose_prefix(state, prefix, source)
    outside = tuple(key for key in state if not key.startswith(prefix))
    if outside and not ignore_outside_prefix:
        raise ExportError(f"{source} has tensors outside the network's prefix {prefix!r}: {name_list(list(outside))}; "
                          "expected only the network's weights")
    theirs = {key[len(prefix):]: tensor for key, tensor in state.items() if key.startswith(prefix)}
    num_classes = _check_architecture(theirs, source)
    model = ResNet18(num_classes=num_classes)
    ours = model.state_dict()
    layout, mapped = min(((layout, _renamed(layout, theirs)) for layout in LAYOUTS),
                         key=lambda pair: len(pair[1].keys() ^ ours.keys()))
    missing = [key for key in ours if key not in mapped and not key.endswith(_COUNTER)]
    extra = [key for key in mapped if key not in ours]
    if missing or extra:
        raise ExportError(f"{source} does not match {layout.description} tensor for tensor: "
                          f"{key_mismatch(missing, extra)} "
                          f"(names after the prefix {prefix!r} and the {layout.name} renames)")
    for key, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(ours[key].shape):
            raise ExportError(f"{source}: tensor {prefix}{_their_name(layout, theirs, key)} has shape "
                              f"{tuple(tensor.shape)}, expected {tuple(ours[key].shape)} for ResNet-18's {key}")
    full = {key: mapped.get(key, torch.zeros((), dtype=torch.long)) for key in ours}
    model.load_state_dict({key: t.float() if t.is_floating_point() else t for key, t in full.items()})
    return Mapped(model.eval(), layout, prefix, outside)


def _renamed(layout: Layout, state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {layout.our_name(key): tensor for key, tensor in state.items()}


def _their_name(layout: Layout, theirs: dict[str, Tensor], our_key: str) -> str:
    return next(key for key in theirs if layout.our_name(key) == our_key)


def _check_architecture(state: dict[str, Tensor], source: str) -> int:
    """The class count of a CIFAR ResNet-18's state; refuse any other architecture, naming what was found."""
    found = []
    if any(re.match(r"layer\d\.\d+\.conv3\.weight$", key) for key in state):
        found.append("bottleneck blocks (conv3: a ResNet-50/101/152)")
    stages = tuple(1 + max((int(m.group(2)) for key in state if (m := re.match(r"layer(\d)\.(\d+)\.", key))
                            and int(m.group(1)) == stage), default=-1) for stage in range(1, 5))
    if stages != BLOCKS_PER_STAGE:
        known = {(3, 4, 6, 3): " (a ResNet-34 or -50)", (3, 4, 23, 3): " (a ResNet-101)", (3, 8, 36, 3): " (a ResNet-152)"}
        found.append(f"blocks per stage {'-'.join(map(str, stages))}{known.get(stages, '')}")
    stem = state.get(STEM)
    if stem is not None and tuple(stem.shape[2:]) != (3, 3):
        kernel = "×".join(map(str, stem.shape[2:]))
        found.append(f"a {kernel} stem convolution (the ImageNet stem; CIFAR models use 3×3 with no max-pool)")
    widths = tuple(state[f"layer{stage}.0.conv1.weight"].shape[0] for stage in range(1, 5)
                   if f"layer{stage}.0.conv1.weight" in state)
    if len(widths) == 4 and widths != STAGE_WIDTHS:
        found.append(f"stage widths {'-'.join(map(str, widths))}")
    if found:
        raise ExportError(f"{source} is not a CIFAR ResNet-18: found {'; '.join(found)}; expected "
                          f"{'-'.join(map(str, BLOCKS_PER_STAGE))} basic blocks of widths "
                          f"{'-'.join(map(str, STAGE_WIDTHS))} and a 3×3 stem (other architectures: "
                          "--model-def FILE.py:NAME)")
    classifier = next((state[key] for key in CLASSIFIER_WEIGHTS if key in state), None)
    if classifier is None or classifier.ndim != 2:
        raise ExportError(f"{source} has no classifier ({' or '.join(CLASSIFIER_WEIGHTS)}, 2-D) after the prefix; "
                          "expected a ResNet-18 ending in a linear layer")
    return int(classifier.shape[0])

