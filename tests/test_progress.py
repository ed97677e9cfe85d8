"""modelport.progress: phases reach the listener in order, scoped and counted; the display
writes one plain line per phase off a terminal, draws rows with counts on one, and nothing when
turned off; the ETA comes from the speed of the units done so far."""

from __future__ import annotations

import io

import pytest

from modelport import progress as pg
from modelport.progress import Event, display, listening, phase, scope


def _record() -> tuple[list[Event], pg.Listener]:
    events: list[Event] = []
    return events, events.append


def test_phases_reach_the_listener_in_order_with_counts():
    events, listener = _record()
    with listening(listener):
        with phase("export", detail="dynamo"):
            pass
        with phase("verify", total=3) as step:
            for label in ("example", "batch=1", "batch=4"):
                step.describe(label)
                step.advance()
    assert [(e.phase, e.state) for e in events if e.state != "step"] == [
        ("export", "start"), ("export", "end"), ("verify", "start"), ("verify", "end")
    ]  # fmt: skip
    counts = [e.done for e in events if e.phase == "verify" and e.state == "step"]
    assert counts[-1] == 3 and counts == sorted(counts)
    assert all(e.total == 3 for e in events if e.phase == "verify")
    assert events[0].label == "export (dynamo)"


def test_a_phase_left_by_an_exception_reports_failed_and_reraises():
    events, listener = _record()
    with pytest.raises(ValueError), listening(listener), phase("export", detail="dynamo"):
        raise ValueError("boom")
    assert [e.state for e in events] == ["start", "failed"]


def test_without_a_listener_phases_count_and_say_nothing():
    with phase("verify", total=2) as step:
        step.advance(2)
    assert step.done == 2


def test_scopes_nest_and_the_listener_is_restored():
    events, listener = _record()
    with listening(listener):
        with scope("version 1"), phase("load"):
            pass
        with phase("write"):
            pass
    with phase("unheard"):
        pass
    assert [(e.scope, e.phase) for e in events if e.state == "start"] == [
        ("version 1", "load"), ("", "write")
    ]  # fmt: skip


def test_display_off_a_terminal_writes_one_plain_line_per_phase(monkeypatch):
    monkeypatch.delenv("MODELPORT_PROGRESS", raising=False)
    out = io.StringIO()  # not a terminal
    previous = pg.set_stream(out)
    try:
        with display("convert") as shown, listening(shown):
            with phase("export", detail="dynamo"):
                pass
            with phase("verify", total=7) as step:
                for i in range(7):
                    step.describe(f"case\x1b[31m {i}")  # control characters never get through
                    step.advance()
            with scope("version 2"), phase("write"):
                pass
    finally:
        pg.set_stream(previous)
    assert out.getvalue().splitlines() == [
        "convert: export (dynamo)",
        "convert: verify (7 cases)",
        "convert version 2: write package",
    ]
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_display_turned_off_writes_nothing(monkeypatch):
    monkeypatch.setenv("MODELPORT_PROGRESS", "0")
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        with display("convert") as shown, listening(shown), phase("export"):
            pass
    finally:
        pg.set_stream(previous)
    assert out.getvalue() == ""


def test_live_display_shows_rows_with_counts_and_marks(monkeypatch):
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")  # the live display, on any stream
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        with display("convert") as shown, listening(shown):
            with phase("export", detail="dynamo"):
                pass
            with phase("verify", total=4) as step:
                step.advance(4)
            with pytest.raises(OSError), phase("write"):
                raise OSError("disk full")
    finally:
        pg.set_stream(previous)
    text = out.getvalue()  # not a terminal: rich prints the final state once
    rows = {ln.split()[1]: ln for ln in text.splitlines() if ln.strip()}
    assert rows["export"].startswith("✓") and "(dynamo)" in rows["export"]
    assert rows["verify"].startswith("✓") and "4/4" in rows["verify"]
    assert rows["write"].startswith("✗")
    assert pg._live is None  # the display was stopped


def test_bars_and_phases_share_one_display(monkeypatch):
    """A bar opened inside a phase display (calibration during a step) joins its rows instead
    of starting a second live display (rich refuses two)."""
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        with display("quantize") as shown, listening(shown), phase("calibrate"):
            live = pg._live
            with pg.progress("calibration (minmax), samples", total=16) as bar:
                assert pg._live is live
                bar.advance(16)
    finally:
        pg.set_stream(previous)
    assert "16/16" in out.getvalue() and "calibrate" in out.getvalue()


def test_a_bar_left_early_is_ticked_and_one_left_by_an_error_crossed(monkeypatch):
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        with pg.progress("search", total=10) as bar:  # a time budget ran out after 3
            bar.advance(3)
        with pytest.raises(MemoryError), pg.progress("blocks") as bar:
            bar.advance(2)
            raise MemoryError
    finally:
        pg.set_stream(previous)
    rows = [ln.split() for ln in out.getvalue().splitlines() if ln.strip()]
    assert rows[0][:2] == ["✓", "search"] and "3/10" in rows[0] and "eta" not in rows[0]
    assert rows[1][:2] == ["✗", "blocks"] and "2" in rows[1]


def test_eta_comes_from_the_units_done_so_far(monkeypatch):
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    now = [100.0]
    live = pg._new_live()
    live.get_time = lambda: now[0]  # type: ignore[method-assign]
    task_id = live.add_task("verify", total=10, counted=True)
    for _ in range(4):  # 40 s per case: a large model (longer than rich's default 30 s window)
        now[0] += 40.0
        live.advance(task_id, 1)
    task = live.tasks[0]
    eta = live.columns[-1].render(task).plain  # type: ignore[union-attr]
    assert eta == "eta 0:04:00"  # 6 cases left at 40 s each
    assert live.columns[-2].render(task).plain == "0:02:40"  # type: ignore[union-attr]
    live.update(task_id, completed=10)
    assert live.columns[-1].render(task).plain == ""  # type: ignore[union-attr]


def test_a_closed_stream_does_not_fail_the_step(monkeypatch):
    """`modelport convert ... 2>&1 | head -1`: once the reader is gone, phase lines are dropped
    and the conversion goes on."""
    monkeypatch.delenv("MODELPORT_PROGRESS", raising=False)

    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    previous = pg.set_stream(Gone())
    try:
        with display("convert") as shown, listening(shown), phase("export") as step:
            step.advance()
    finally:
        pg.set_stream(previous)
    assert step.done == 1


def test_echo_prints_above_the_live_display_or_says_it_did_not(monkeypatch):
    monkeypatch.setenv("MODELPORT_PROGRESS", "1")
    assert pg.echo("nothing on screen") is False  # the caller prints it itself
    out = io.StringIO()
    previous = pg.set_stream(out)
    try:
        with pg.progress("plan: candidates", total=2) as bar:
            assert pg.echo("[1/2] int8-static: building\x1b[2J") is True
            bar.advance(2)
    finally:
        pg.set_stream(previous)
    text = out.getvalue()
    assert "[1/2] int8-static: building" in text and "\x1b[2J" not in text  # no control chars
    assert "2/2" in text
