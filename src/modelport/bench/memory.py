"""Process memory, as the kernel counts it: resident set size now and its peak.

What the numbers mean (and do not):

- ``rss_bytes()`` is VmRSS from ``/proc/self/status``: pages of this process resident in RAM now,
  the Python interpreter and every library included. Differences between two readings are what
  the step in between added (a session's weights and arenas, say).
- ``peak_rss_bytes()`` is VmHWM, the high-water mark of VmRSS. ``reset_peak()`` writes ``5`` to
  ``/proc/self/clear_refs`` (Linux >= 4.0) so that the next peak covers only what follows; where
  that is not allowed the peak covers the whole life of the process, and ``reset_peak`` says so by
  returning False.
- Off Linux, ``resource.getrusage`` gives the peak only (ru_maxrss, never reset) and RSS now is
  unknown (0).
- Memory freed by one step and reused by the next is not counted twice, so growth measured for the
  second of two models in one process can be smaller than the same model alone would need. For
  exact per-model figures, bench each model in its own process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MemoryDelta", "measure_memory", "peak_rss_bytes", "reset_peak", "rss_bytes"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (0 where unknown)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (since start or the last ``reset_peak``), in bytes."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def reset_peak() -> bool:
    """Restart the peak from the current RSS; False where the OS does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class MemoryDelta:
    """Memory around one step: RSS before and after, and the peak reached during it.

    ``grown`` = after - before (what stayed), ``peak_extra`` = peak - before (the most it took at
    once, transient buffers included). ``peak_reset`` is False when the peak could not be
    restarted before the step, in which case ``peak_extra`` may include earlier peaks.
    """

    before: int
    after: int
    peak: int
    peak_reset: bool

    @property
    def grown(self) -> int:
        return self.after - self.before

    @property
    def peak_extra(self) -> int:
        return max(self.peak - self.before, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rss_before_bytes": self.before,
            "rss_after_bytes": self.after,
            "peak_rss_bytes": self.peak,
            "grown_bytes": self.grown,
            "peak_extra_bytes": self.peak_extra,
            "peak_reset": self.peak_reset,
        }


def measure_memory(step: Callable[[], Any]) -> tuple[Any, MemoryDelta]:
    """Run ``step()`` and return (its result, the memory it took)."""
    was_reset = reset_peak()
    before = rss_bytes()
    result = step()
    after = rss_bytes()
    return result, MemoryDelta(before, after, peak_rss_bytes(), was_reset)
