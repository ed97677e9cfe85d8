"""Progress for steps that take more than a few seconds: bars for counted loops (calibration, the
sensitivity search, plan candidates) and the phases of a conversion.

Bars: the loop draws them itself.

    with progress("sensitivity: measuring nodes", total=len(groups)) as bar:
        for ...:
            bar.advance()

Phases: library code says what it is doing; a listener installed by the caller receives each
step as an :class:`Event` (``convert(..., progress=listener)``, ``verify_model(...,
progress=listener)``). Without a listener a phase costs a function call and prints nothing.

    with phase("verify", total=len(cases)) as step:
        for case in cases:
            ...
            step.advance()

:func:`display` is the listener the command line uses: it draws each phase as a row of the same
live display as the bars (one display: rich allows only one live display at a time).

Where output goes: stderr (the command line points it at the terminal with :func:`set_stream`
while it captures other libraries' output). ``MODELPORT_PROGRESS=0`` turns everything off,
``=1`` forces the live display. Otherwise, on a terminal: bars and phase rows with counts,
elapsed time and an ETA; elsewhere (CI logs, pipes): bars print nothing, and :func:`display`
writes one plain line per phase as it starts (no colours, no carriage returns). rich is imported
on first use only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich is imported when a bar is shown (`import modelport` stays light)
    from rich.progress import Progress, TaskID

__all__ = [
    "PHASE_LABELS",
    "PHASE_UNITS",
    "Bar",
    "Event",
    "Listener",
    "Phase",
    "display",
    "echo",
    "listening",
    "phase",
    "progress",
    "progress_enabled",
    "scope",
    "set_stream",
]

_live: Progress | None = None  # the rich Progress on screen, while any bar or phase is open
_open = 0
_stream: TextIO | None = None  # None: sys.stderr at the time


def set_stream(stream: TextIO | None) -> TextIO | None:
    """Send bars and phase lines to ``stream`` (None: ``sys.stderr`` at the time of each use);
    returns the previous setting. The command line points this at the terminal while it
    captures other libraries' output."""
    global _stream
    previous, _stream = _stream, stream
    return previous


def _out() -> TextIO:
    return _stream or sys.stderr


def _mode() -> str:
    """ "live" (rich display), "lines" (plain lines, for phases only) or "off"."""
    setting = os.environ.get("MODELPORT_PROGRESS", "").strip().lower()
    if setting in ("0", "false", "no"):
        return "off"
    if setting in ("1", "true", "yes"):
        return "live"
    return "live" if getattr(_out(), "isatty", lambda: False)() else "lines"


def progress_enabled() -> bool:
    """Whether bars are drawn (a terminal, or ``MODELPORT_PROGRESS=1``)."""
    return _mode() == "live"


def _acquire() -> Progress | None:
    """The shared rich Progress, started on first use; None when it cannot be shown."""
    global _live, _open
    if _live is None:
        live = _new_live()
        try:
            live.start()
        except Exception:  # another live display (a status spinner) owns the terminal
            return None
        _live = live
    _open += 1
    return _live


def _release() -> None:
    global _live, _open
    _open -= 1
    if _open == 0 and _live is not None:
        _live.stop()
        _live = None


def _new_live() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
    )
    from rich.text import Text

    def counted(task: Task) -> bool:
        return bool(task.fields.get("counted", True))

    class State(SpinnerColumn):  # a spinner while running; a tick when done, a cross on failure
        def render(self, task: Task) -> Any:
            if task.fields.get("failed"):
                return Text("✗", style="red")
            if task.finished or task.fields.get("ended"):
                return Text("✓", style="green")
            return super().render(task)

    class Bar(BarColumn):  # phases that are not counted: a pulse while running, then nothing
        def render(self, task: Task) -> Any:
            if not counted(task) and (task.fields.get("ended") or task.fields.get("failed")):
                return Text("")
            return super().render(task)

    class Count(ProgressColumn):  # 3/7, or 3 when the total is not known
        def render(self, task: Task) -> Text:
            if not counted(task):
                return Text("")
            if task.total is None:
                return Text(
                    f"{task.completed:g}" if task.completed else "", style="progress.download"
                )
            return Text(f"{task.completed:g}/{task.total:g}", style="progress.download")

    class Elapsed(ProgressColumn):
        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            return Text(_clock(task.elapsed), style="progress.elapsed")

    class Eta(ProgressColumn):  # from the speed so far, while a counted task runs
        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            done = task.finished or task.fields.get("ended") or task.fields.get("failed")
            if not counted(task) or task.total is None or done:
                return Text("")
            return Text(f"eta {_clock(task.time_remaining)}", style="progress.remaining")

    return Progress(
        State(),
        TextColumn("{task.description}"),
        Bar(bar_width=24),
        Count(),
        Elapsed(),
        Eta(),
        console=Console(file=_out(), highlight=False),
        transient=False,
        # the ETA comes from the speed over all units done so far (rich's default, the last 30 s,
        # has no speed at all once one unit takes longer: a large model's verification cases)
        speed_estimate_period=24 * 3600,
        # never swap sys.stdout/stderr: captured library output must stay captured
        redirect_stdout=False,
        redirect_stderr=False,
    )


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


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


def echo(text: str) -> bool:
    """Print a line of text above the live display when one is on screen (printed any other way
    it would tear the bars); False when none is, and the caller prints it as usual."""
    if _live is None:
        return False
    _live.console.print(_plain(text), highlight=False, markup=False)
    return True


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Bar]:
    """A progress bar for ``total`` steps (None: a spinner with a count)."""
    live = _acquire() if progress_enabled() else None
    if live is None:
        yield Bar(None, None)
        return
    task = live.add_task(description, total=total)
    try:
        yield Bar(live, task)
    except BaseException:
        live.update(task, failed=True)
        raise
    else:
        live.update(task, ended=True)  # a tick also when it stopped short of its total
    finally:
        live.stop_task(task)
        _release()


# --- phases ---------------------------------------------------------------------------------

# phase -> how it is shown (a phase not listed is shown by its name)
PHASE_LABELS: dict[str, str] = {
    "load": "load source",
    "reference": "run the source on the example",
    "export": "export",
    "infer": "shape inference",
    "smoke": "smoke run on generated inputs",
    "check": "check (onnx.checker, shape inference)",
    "verify": "verify",
    "processing": "verify processing",
    "write": "write package",
    "versions": "versions",
    "prune": "prune",
    "measure": "measure (size, latency, fidelity)",
}

# what a counted phase counts (default: steps)
PHASE_UNITS: dict[str, str] = {"verify": "case", "smoke": "size", "versions": "version"}


@dataclass(frozen=True)
class Event:
    """One report of a phase.

    phase: what is being done ("load", "export", "check", "verify", "write", ...;
        ``PHASE_LABELS`` says how each is shown).
    state: "start", "step" (``done`` changed, or ``detail``), "end" or "failed" (an exception
        left the phase; it propagates).
    done, total: units done and the number there are (None: the phase is not counted).
    detail: what the phase works on (the exporter, the case being verified).
    scope: what the phase belongs to ("version 2" of a TF Serving model base), "" at the top.
    seconds: since the phase started.
    """

    phase: str
    state: str
    done: int = 0
    total: int | None = None
    detail: str = ""
    scope: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        text = PHASE_LABELS.get(self.phase, self.phase)
        return f"{text} ({self.detail})" if self.detail else text


Listener = Callable[[Event], None]

_listener: ContextVar[Listener | None] = ContextVar("modelport_progress_listener", default=None)


@contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Send the phases reported inside the block to ``listener`` (None: leave the current one)."""
    if listener is None:
        yield
        return
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextmanager
def scope(name: str) -> Iterator[None]:
    """Report the phases inside the block as part of ``name`` (``Event.scope``)."""
    outer = _listener.get()
    if outer is None:
        yield
        return

    def scoped(event: Event) -> None:
        inner = f"{name} / {event.scope}" if event.scope else name
        outer(dataclasses.replace(event, scope=inner))

    with listening(scoped):
        yield


class Phase:
    """The running phase: ``advance()`` after each unit, ``describe(detail)`` to say what it
    works on now. ``done`` counts what was advanced."""

    def __init__(self, name: str, total: int | None, detail: str, listener: Listener | None):
        self.name, self.total, self.detail, self.done = name, total, detail, 0
        self._listener = listener
        self._t0 = time.perf_counter()

    def emit(self, state: str) -> None:
        if self._listener is not None:
            seconds = time.perf_counter() - self._t0
            self._listener(Event(self.name, state, self.done, self.total, self.detail, "", seconds))

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.emit("step")

    def describe(self, detail: str) -> None:
        self.detail = detail
        self.emit("step")


@contextmanager
def phase(name: str, total: int | None = None, detail: str = "") -> Iterator[Phase]:
    """Report a phase to the current listener: "start" now, "end" when the block ends
    ("failed" when an exception leaves it)."""
    step = Phase(name, total, detail, _listener.get())
    step.emit("start")
    try:
        yield step
    except BaseException:
        step.emit("failed")
        raise
    step.emit("end")


def _plain(text: str) -> str:
    """``text`` without control characters (details can hold user-given names)."""
    return "".join(c if c.isprintable() else " " for c in text)


@contextmanager
def display(title: str) -> Iterator[Listener]:
    """A listener that shows phases: rows of the live display on a terminal (counts, elapsed
    time, an ETA for counted phases), one plain line per phase elsewhere ("convert: export
    (dynamo)"), nothing with ``MODELPORT_PROGRESS=0``."""
    mode = _mode()
    if mode == "off":
        yield lambda event: None
        return
    if mode == "lines":

        def line(event: Event) -> None:
            if event.state != "start":
                return
            where = f"{title} {event.scope}" if event.scope else title
            count = ""
            if event.total is not None:
                unit = PHASE_UNITS.get(event.phase, "step")
                count = f" ({event.total} {unit}{'s' * (event.total != 1)})"
            try:
                out = _out()
                out.write(_plain(f"{where}: {event.label}{count}") + "\n")
                out.flush()
            except (
                OSError,
                ValueError,
            ):  # stderr closed (a pipe's reader left): not worth failing for
                pass

        yield line
        return
    live = _acquire()
    if live is None:  # another live display owns the terminal
        yield lambda event: None
        return
    tasks: dict[tuple[str, str], TaskID] = {}

    def row(event: Event) -> str:
        where = f"{event.scope}: " if event.scope else ""
        return _plain(where + event.label)

    def show(event: Event) -> None:
        key = (event.scope, event.phase)
        if event.state == "start":
            tasks[key] = live.add_task(
                row(event), total=event.total, counted=event.total is not None
            )
            return
        task = tasks.get(key)
        if task is None:
            return
        if event.state == "step":
            live.update(task, completed=event.done, description=row(event))
        elif event.state == "end":
            live.update(task, completed=event.done, ended=True, description=row(event))
            live.stop_task(task)
        else:  # failed
            live.update(task, failed=True, description=row(event))
            live.stop_task(task)

    try:
        yield show
    finally:
        _release()
