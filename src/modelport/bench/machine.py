"""What a benchmark ran on, recorded beside its numbers."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

__all__ = ["machine_info"]


def machine_info() -> dict[str, Any]:
    """CPU, OS, Python and library versions, and the load average when the run started."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
    }
    if hasattr(os, "getloadavg"):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    for mod in ("numpy", "onnxruntime", "onnx"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", None)
    return info


def _cpu_model() -> str:
    from ..runtime.cpu import read_cpuinfo

    return read_cpuinfo().model or platform.processor()
