"""The CPU's name and instruction-set flags, read once from /proc/cpuinfo.

The one reader of /proc/cpuinfo in modelport: the engines (which precisions run natively),
quantization (int8 types for VNNI / ARM dot product) and benchmarks (the machine a figure was
measured on) all take it from here.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CpuInfo", "read_cpuinfo"]

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuInfo:
    """model: the CPU's name ("" when unknown); flags: every flag (x86 "flags", ARM "Features")
    of the first processor listed."""

    model: str = ""
    flags: frozenset[str] = field(default_factory=frozenset)


def read_cpuinfo(text: str | None = None) -> CpuInfo:
    """Parse ``text`` in /proc/cpuinfo's format, or (None) this machine's /proc/cpuinfo, read
    once per process. A system without it (macOS, Windows) gets the name from
    ``platform.processor()`` and no flags."""
    if text is None:
        return _this_machine()
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model=model, flags=flags)


@functools.cache
def _this_machine() -> CpuInfo:
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return CpuInfo(model=platform.processor())
    return read_cpuinfo(text)
