"""Terminal output helpers shared by the subcommands: consoles, tables, JSON, numbers, sizes.

rich is imported on the first print, not at import, so ``modelport CMD --help`` stays fast.
While a command runs, other libraries' output is captured (``cli.capture``); the consoles here
and :func:`echo` always write to the terminal the command was started from.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.table import Table

# The real stdout / stderr while other libraries' output is captured (None: sys.stdout/stderr).
_REAL: dict[str, TextIO | None] = {"stdout": None, "stderr": None}


def real_stream(name: str) -> TextIO:
    """The terminal stream ``name`` ("stdout" or "stderr"), even while output is captured."""
    return _REAL[name] or getattr(sys, name)


class _Stream:
    """A file that writes to the real stream of its name at the time of each write."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return real_stream(self.name).write(text)

    def flush(self) -> None:
        real_stream(self.name).flush()

    def isatty(self) -> bool:
        return bool(getattr(real_stream(self.name), "isatty", lambda: False)())

    def fileno(self) -> int:
        return real_stream(self.name).fileno()

    @property
    def encoding(self) -> str:
        return getattr(real_stream(self.name), "encoding", None) or "utf-8"


def _broken_pipe() -> None:
    """`modelport ... | head`: stop quietly (rich's own handler needs sys.stdout.fileno(), which
    a captured stdout does not have)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, real_stream("stdout").fileno())
    except (OSError, ValueError):
        pass
    raise SystemExit(1)


class _LazyConsole:
    """A rich Console made on first use (importing rich costs ~90 ms)."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._console: Any = None

    def _get(self) -> Any:
        if self._console is None:
            from rich.console import Console

            # Not a terminal (CI logs, pipes): wide enough that report tables do not fold.
            width = None if os.isatty(1) else 160
            self._console = Console(file=_Stream(self._stream), highlight=False, soft_wrap=True,
                                    width=width)  # fmt: skip
            self._console.on_broken_pipe = _broken_pipe
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def status(self, text: str) -> Any:
        """A spinner while a block runs. Unlike rich's Console.status it does not redirect
        sys.stdout/stderr into the console, which would let captured library output through."""
        from rich.live import Live
        from rich.spinner import Spinner

        return Live(Spinner("dots", text=text), console=self._get(), transient=True,
                    refresh_per_second=12.5, redirect_stdout=False, redirect_stderr=False)  # fmt: skip


console: Any = _LazyConsole("stdout")
console_err: Any = _LazyConsole("stderr")


def echo(text: str) -> None:
    """Plain text on the real stdout (machine-readable output: JSON lines)."""
    out = real_stream("stdout")
    out.write(text + "\n")
    out.flush()


# raw result keys -> column headers (tables built from dict keys go through this)
HEADERS: dict[str, str] = {
    "req_s": "req/s",
    "items_s": "items/s",
    "throughput_items_s": "items/s",
    "p50_ms": "p50 ms",
    "p90_ms": "p90 ms",
    "p99_ms": "p99 ms",
    "client_cpu_cores": "client CPU (cores)",
    "http_client": "HTTP client",
    "concurrency": "concurrency",
    "errors": "errors",
    "protocol": "protocol",
}


def header(key: str) -> str:
    return HEADERS.get(key, key.replace("_", " "))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(header(c), overflow="fold")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    return t


def fmt(v: Any) -> str:
    """A value for a table cell: plain decimals (1,234 / 12.35 / 0.9917), never 1.23e+03."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "[green]yes[/]" if v else "[red]no[/]"
    if isinstance(v, float):
        return number(v)
    return str(v)


def number(v: float) -> str:
    """Human format for a float: thousands separators above 1000, 4 significant digits below,
    scientific notation only for tiny nonzero values (tolerances, diffs)."""
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1e-3:
        return f"{v:.4g}"
    return f"{v:.2e}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    from ..package import json_default

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, default=json_default))
