"""What the CPU offers for int8: which integer dot-product instructions onnxruntime's kernels can use.

x86 CPUs without VNNI multiply uint8 × int8 pairs with ``VPMADDUBSW``, whose
16-bit intermediate sums can saturate when both operands use their full range;
onnxruntime's guidance is to quantize weights to 7 bits (``reduce_range``) there.
CPUs with AVX-512 VNNI or AVX-VNNI accumulate in 32 bits and need no reduction.
ARM CPUs have their own int8 dot products (SDOT/UDOT) and prefer signed activations.
Reads ``/proc/cpuinfo`` through ``resnet_edge.hardware``; elsewhere falls back to the machine type only.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_edge.hardware import parse_cpuinfo, this_cpu

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_ARM = ("aarch64", "arm64", "armv8l", "armv7l")


@dataclass(frozen=True)
class CpuInt8Support:
    """The CPU family and whether it accumulates int8 products without saturation."""

    family: str  # "x86", "arm" or the machine name
    vnni: bool | None  # None: the flags could not be read (no /proc/cpuinfo)
    flags: tuple[str, ...]  # the int8-relevant flags found

    def describe(self) -> str:
        if self.family == "x86":
            if self.vnni is None:
                return "x86-64 (VNNI unknown: no /proc/cpuinfo)"
            return f"x86-64 with {', '.join(self.flags)}" if self.vnni else "x86-64 without VNNI"
        return self.family


def cpu_int8_support(cpuinfo: str | None = None) -> CpuInt8Support:
    """Inspect this CPU (or the given ``/proc/cpuinfo`` text)."""
    cpu = this_cpu() if cpuinfo is None else parse_cpuinfo(cpuinfo)
    machine, flags = cpu.machine, cpu.flags
    if machine in _ARM or "asimd" in flags:
        return CpuInt8Support("arm", vnni=False, flags=tuple(f for f in ("asimddp", "i8mm") if f in flags))
    if machine in _X86 or "sse2" in flags:
        found = tuple(f for f in VNNI_FLAGS if f in flags)
        return CpuInt8Support("x86", vnni=bool(found) if flags else None, flags=found)
    return CpuInt8Support(machine or "unknown", vnni=False, flags=())
