"""Progress bars for steps that take more than a few seconds (calibration, the sensitivity search,
plan candidates, large conversions).

    with progress("sensitivity: measuring nodes", total=len(groups)) as bar:
        for ...:
            bar.advance()

Bars go to stderr, with counts, elapsed time and an ETA, and only when stderr is a terminal (and
``MODELPORT_PROGRESS`` is not ``0``): logs, pipes and tests see nothing. Bars opened while another
is open are shown under it in the same display. rich is imported on first use only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich is imported when a bar is shown (`import modelport` stays light)
    from rich.progress import Progress, TaskID

__all__ = ["Bar", "progress", "progress_enabled"]

_live: Progress | None = None  # the rich Progress on screen, while any bar is open
_open = 0


def progress_enabled() -> bool:
    if os.environ.get("MODELPORT_PROGRESS", "").strip() in ("0", "false", "no"):
        return False
    if os.environ.get("MODELPORT_PROGRESS", "").strip() in ("1", "true", "yes"):
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Bar:
    """One task of the display: ``advance()``, ``update(description=..., total=...)``;
    ``done`` counts what was advanced (also when nothing is shown)."""

    def __init__(self, live: Progress | None, task: TaskID | None) -> None:
        self._live, self._task, self.done = live, task, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._live is not None and self._task is not None:
            self._live.advance(self._task, n)

    def update(self, **fields: Any) -> None:
        if self._live is not None and self._task is not None:
            self._live.update(self._task, **fields)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Bar]:
    """A progress bar for ``total`` steps (None: a spinner with a count)."""
    global _live, _open
    if not progress_enabled():
        yield Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if _live is None:
        _live = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        try:
            _live.start()
        except Exception:  # another live display (a status spinner) owns the terminal
            _live = None
            yield Bar(None, None)
            return
    _open += 1
    task = _live.add_task(description, total=total)
    try:
        yield Bar(_live, task)
    finally:
        _live.update(task, visible=True)
        _live.stop_task(task)
        _open -= 1
        if _open == 0:
            _live.stop()
            _live = None
