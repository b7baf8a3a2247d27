"""ResNet-18 for 32×32 inputs, written from scratch (He et al., 2016, with a CIFAR stem).

Each ``BasicBlock`` computes ``y = ReLU(F(x) + shortcut(x))`` with
``F = conv3x3-BN-ReLU-conv3x3-BN``; the shortcut is the identity, or conv1x1-BN
when the block changes stride or width. The stem is a stride-1 conv3x3 with no
max-pool, so the four stages run at 32, 16, 8 and 4 pixels. 11,173,962
parameters for 10 classes. The input is ``(B, 3, 32, 32)`` normalized with
``resnet_edge.cifar10.MEAN/STD``.

:class:`Widths` sets every layer's channel count, so the same class holds a
channel-pruned model (``resnet-edge prune``): the checkpoint records the widths
and any stage rebuilds the model from them, without the pruning library. The
default is the standard ResNet-18.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from resnet_edge.cifar10 import NUM_CLASSES

STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


@dataclass(frozen=True)
class Widths:
    """The channel count of every layer that pruning can shrink.

    Channels joined by a residual addition must stay equal, so a stage has one
    width for all its block outputs (each ``conv2``, the projection shortcut and
    the identities between them); the stem feeds stage 1 through an identity, so
    its width must equal stage 1's. Only each block's inner width (``conv1``'s
    output, consumed by ``conv2``) is free of any coupling.
    """

    stem: int = STAGE_WIDTHS[0]
    stages: tuple[int, ...] = STAGE_WIDTHS
    inner: tuple[int, ...] = tuple(w for w, n in zip(STAGE_WIDTHS, BLOCKS_PER_STAGE) for _ in range(n))

    def __post_init__(self) -> None:
        blocks = sum(BLOCKS_PER_STAGE)
        if len(self.stages) != len(STAGE_WIDTHS) or len(self.inner) != blocks:
            raise ValueError(f"widths need {len(STAGE_WIDTHS)} stage widths and {blocks} inner widths, "
                             f"got {len(self.stages)} and {len(self.inner)}")
        values = (self.stem, *self.stages, *self.inner)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise ValueError(f"every width must be a positive integer, got stem {self.stem}, stages "
                             f"{list(self.stages)}, inner {list(self.inner)}")
        if self.stem != self.stages[0]:
            raise ValueError(f"the stem width {self.stem} must equal stage 1's {self.stages[0]}: "
                             "an identity shortcut adds them")

    @property
    def is_default(self) -> bool:
        return self == Widths()

    def to_dict(self) -> dict[str, Any]:
        return {"stem": self.stem, "stages": list(self.stages), "inner": list(self.inner)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Widths:
        try:
            stem, stages, inner = int(values["stem"]), tuple(map(int, values["stages"])), tuple(map(int, values["inner"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"widths {values!r} are malformed; expected stem: an int, stages: 4 ints, "
                             "inner: 8 ints") from None
        return cls(stem, stages, inner)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1; no bias because a BatchNorm follows."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, used by projection shortcuts."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions plus a shortcut: ``y = ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, inner: int | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"BasicBlock stride must be 1 or 2, got {stride}")
        inner = inner or planes
        self.conv1 = conv3x3(in_planes, inner, stride)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(inner, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        identity = self.shortcut(x)

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        out = out + identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 with a CIFAR stem (conv3x3 stride 1, no max-pool), at the channel ``widths`` given."""

    def __init__(self, num_classes: int = NUM_CLASSES, zero_init_residual: bool = False,
                 widths: Widths | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        widths = widths or Widths()
        self.conv1 = conv3x3(3, widths.stem)
        self.bn1 = nn.BatchNorm2d(widths.stem)
        self.relu = nn.ReLU(inplace=True)

        in_planes, inner = widths.stem, iter(widths.inner)
        stages = []
        for width, stride, blocks in zip(widths.stages, STAGE_STRIDES, BLOCKS_PER_STAGE):
            layers = [BasicBlock(in_planes, width, stride, next(inner))]
            layers += [BasicBlock(width, width, 1, next(inner)) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_planes = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths.stages[-1], num_classes)
        self._init_weights(zero_init_residual)

    def widths(self) -> Widths:
        """The widths of the layers as they are now (after pruning shrank them in place, say)."""
        blocks = [block for stage in (self.layer1, self.layer2, self.layer3, self.layer4) for block in stage]
        return Widths(self.conv1.out_channels,
                      tuple(stage[-1].conv2.out_channels for stage in (self.layer1, self.layer2, self.layer3, self.layer4)),
                      tuple(block.conv1.out_channels for block in blocks))

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block then starts as the identity, which eases early training (Goyal et al., 2017).
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)

        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)

        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates of one image through every convolution and linear layer."""
    macs = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal macs
        per_output = module.weight[0].numel()  # in_channels / groups × kernel area, or in_features
        macs += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, image_size, image_size))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return macs
