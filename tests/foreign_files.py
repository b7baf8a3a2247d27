"""ResNet-18 files as other code bases write them, holding given weights: shared by the tests and
``benchmarks/foreign_formats.py``.

The classes are written out as those code bases have them (kuangliu/pytorch-cifar's ``models/resnet.py``, a
from-scratch network with names of its own for ``--model-def``); torchvision's comes from torchvision itself.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


# --- kuangliu/pytorch-cifar models/resnet.py, written out as that repository has it -------------------------
class KuangliuBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class KuangliuResNet(nn.Module):
    def __init__(self, block=KuangliuBlock, num_blocks=(2, 2, 2, 2), num_classes=10):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        layers = []
        for stride in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


# A from-scratch ResNet-18 with names no layout table knows, for --model-def (the file the user points at).
MODEL_DEF_SOURCE = '''
import torch
from torch import nn


class Unit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                               nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.a(x) + self.skip(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        widths, units, cin = (64, 128, 256, 512), [], 64
        for i, w in enumerate(widths):
            units += [Unit(cin, w, 1 if i == 0 else 2), Unit(w, w, 1)]
            cin = w
        self.body = nn.Sequential(*units)
        self.head = nn.Linear(512, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))
'''


def cifar_torchvision_resnet18(depth=torchvision.models.resnet18) -> nn.Module:
    """torchvision's ResNet with the usual CIFAR surgery: a 3×3 stride-1 conv1 and no max-pool."""
    model = depth(num_classes=10)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def kuangliu_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ResNet18's tensors under kuangliu's names (the classifier is ``linear``): this file's own mapping."""
    return {"linear." + k[3:] if k.startswith("fc.") else k: v for k, v in weights.items()}


def torchvision_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ResNet18's tensors under torchvision's names (projection shortcuts are ``downsample``)."""
    return {k.replace(".shortcut.", ".downsample."): v for k, v in weights.items()}


def write_formats(folder: Path, weights: dict[str, torch.Tensor]) -> dict[str, Path]:
    """One file per format, each as its code base writes it, holding ``weights`` (our ResNet18's)."""
    kuangliu, tv = kuangliu_names(weights), torchvision_names(weights)
    untrained = cifar_torchvision_resnet18().state_dict()
    paths = {name: folder / f"{name}.pth" for name in
             ("kuangliu", "torchvision", "lightning", "timm", "bare", "compiled_ddp")}
    # kuangliu's main.py saves {'net': net.state_dict(), 'acc', 'epoch'} from a DataParallel model.
    torch.save({"net": {f"module.{k}": v for k, v in kuangliu.items()}, "acc": 93.55, "epoch": 199},
               paths["kuangliu"])
    torch.save(tv, paths["torchvision"])
    # Lightning: the network is the LightningModule's attribute "model"; a weighted loss adds a buffer beside it.
    torch.save({"epoch": 29, "global_step": 11730, "pytorch-lightning_version": "2.4.0",
                "state_dict": {**{f"model.{k}": v for k, v in kuangliu.items()}, "criterion.weight": torch.ones(10)},
                "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 29}}}}, "callbacks": {},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}], "lr_schedulers": [],
                "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.1, "batch_size": 128}}, paths["lightning"])
    # timm's CheckpointSaver: the trained weights are the EMA ones here; the raw ones are untrained.
    torch.save({"epoch": 199, "arch": "resnet18", "state_dict": untrained, "state_dict_ema": tv,
                "optimizer": {"state": {}, "param_groups": []}, "version": 2, "metric": 93.55,
                "args": argparse.Namespace(model="resnet18", lr=0.1, model_ema=True)}, paths["timm"])
    torch.save(weights, paths["bare"])
    # torch.compile's "_orig_mod." inside DDP's "module.".
    torch.save({f"module._orig_mod.{k}": v for k, v in weights.items()}, paths["compiled_ddp"])
    return paths


def write_model_def(folder: Path, weights: dict[str, torch.Tensor]) -> tuple[Path, Path]:
    """``mynet.py`` (class ``Net``) and its weights, saved as ``{'state_dict': ...}`` under the prefix ``net.``."""
    source = folder / "mynet.py"
    source.write_text(MODEL_DEF_SOURCE)
    namespace: dict = {}
    exec(compile(MODEL_DEF_SOURCE, str(source), "exec"), namespace)
    net = namespace["Net"]()
    # Net registers its tensors in our ResNet18's order, so the mapping is by position (checked by the caller).
    net.load_state_dict(dict(zip(net.state_dict(), weights.values())), strict=True)
    weights_file = folder / "mynet.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, weights_file)
    return source, weights_file


def write_pickled_module(path: Path, weights: dict[str, torch.Tensor]) -> nn.Module:
    """``torch.save(model)`` of a kuangliu ResNet18 holding ``weights``, as many tutorials save models."""
    model = KuangliuResNet().eval()
    model.load_state_dict(kuangliu_names(weights), strict=True)
    torch.save(model, path)
    return model


class HandFlattened(nn.Module):
    """ResNet-18 whose head flattens with ``view(x.size(0), -1)``: traced at batch 1 it bakes in Reshape [1, -1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.layer4(n.layer3(n.layer2(n.layer1(n.relu(n.bn1(n.conv1(x)))))))
        x = F.adaptive_avg_pool2d(x, 1)
        return n.fc(x.view(x.size(0), -1))


def torch_to_onnx(model: nn.Module, path: Path, example: torch.Tensor, outputs=("out",), dynamic: bool = True,
                  opset: int = 17) -> Path:
    """``model`` exported as another code base would: input 'x', its own output names, TorchScript exporter."""
    buffer = io.BytesIO()
    axes = {name: {0: "n"} for name in ("x", *outputs)} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, input_names=["x"],
                          output_names=list(outputs), dynamic_axes=axes, opset_version=opset)
    path.write_bytes(buffer.getvalue())
    return path


def write_foreign_onnx(path: Path, weights: dict[str, torch.Tensor]) -> Path:
    """Our ResNet18 holding ``weights`` exported as someone else would: input 'x', output 'out', batch fixed at 1."""
    from resnet_edge.model import ResNet18

    model = ResNet18().eval()
    model.load_state_dict(weights)
    return torch_to_onnx(HandFlattened(model), path, torch.randn(1, 3, 32, 32), dynamic=False, opset=11)
