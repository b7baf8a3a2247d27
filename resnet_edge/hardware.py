"""What machine this is: the CPU read once from ``/proc/cpuinfo`` (model name, feature flags), and the GPU.

Three stages need it: run records name the hardware (:func:`hardware_description`),
int8 quantization picks types by the CPU's dot-product instructions
(``resnet_edge.export.cpu_features``), and the runtime's optimized-graph cache is keyed
by the CPU, since a saved graph can hold kernels for its instruction set. Linux has
``/proc/cpuinfo``; elsewhere the model name falls back to ``platform`` and there are no
flags. No torch or onnx at import: torch is asked only for a CUDA device's name.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """The first processor's model name and flags (``flags`` on x86, ``Features`` on ARM)."""

    machine: str
    model_name: str | None
    flags: frozenset[str]
    family_model: str | None = None  # x86 "family 25 model 17": tells CPU generations apart where the name does not

    def describe(self) -> str:
        """``AMD EPYC 9R45, 2 cores``: the model name (or machine type) and this process's core count."""
        return f"{self.model_name or platform.processor() or self.machine}, {os.cpu_count()} cores"

    def fingerprint(self) -> str:
        """Machine, model and flags in one string: what makes a compiled kernel valid on this CPU."""
        return "\n".join([self.machine, self.model_name or "", " ".join(sorted(self.flags))])


def parse_cpuinfo(text: str) -> CpuInfo:
    """The :class:`CpuInfo` in ``/proc/cpuinfo`` ``text`` (only the first processor's lines count)."""
    model_name, flags, family, model = None, None, None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model_name is None:
            model_name = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
        elif key == "cpu family" and family is None:
            family = value.strip()
        elif key == "model" and model is None:
            model = value.strip()
    family_model = f"family {family} model {model}" if family and model else None
    return CpuInfo(platform.machine().lower(), model_name, flags or frozenset(), family_model)


@lru_cache(maxsize=1)
def this_cpu() -> CpuInfo:
    """This machine's CPU (read once per process)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text)


def hardware_description(device: torch.device) -> str:
    """The GPU name, or the CPU model and core count, for run records."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return this_cpu().describe()
