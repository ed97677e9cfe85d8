"""What the command line does with an error: one exit-code table, one line of cause, one next step.

Every exception that reaches ``modelport.cli.main`` goes through :func:`handle`; tracebacks are
shown only with ``--debug`` (or ``MODELPORT_DEBUG=1``).
"""

from __future__ import annotations

import errno

import click

from ..errors import (
    ConversionError,
    InputError,
    MissingDependencyError,
    ModelportError,
    OptimizationError,
    PackageError,
    UsageError,
    VerificationError,
)

__all__ = ["EXIT_CODES", "EXIT_CODE_HELP", "exit_code", "handle"]

OK, CHECK_FAILED, USAGE, UNEXPECTED, INTERRUPTED = 0, 1, 2, 3, 130

# What each exit code means: README.md and `modelport --help` show this text.
EXIT_CODE_HELP = (
    "Exit codes: 0 ok; 1 a check failed (verification, budget, no request succeeded); "
    "2 bad usage or input (options, files, data, packages); 3 an unexpected error (a bug, or an "
    "exception from your model's own code; --debug shows the traceback); 130 interrupted."
)

# Exception class -> exit code. The most specific class in an exception's MRO wins.
EXIT_CODES: dict[type[BaseException], int] = {
    VerificationError: CHECK_FAILED,
    UsageError: USAGE,
    InputError: USAGE,
    PackageError: USAGE,
    ConversionError: USAGE,
    OptimizationError: USAGE,
    MissingDependencyError: USAGE,
    ModelportError: USAGE,
    click.UsageError: USAGE,
    click.ClickException: USAGE,
    OSError: USAGE,
    click.exceptions.Abort: INTERRUPTED,
    KeyboardInterrupt: INTERRUPTED,
    Exception: UNEXPECTED,
}


def exit_code(exc: BaseException) -> int:
    """The exit code for ``exc``, from :data:`EXIT_CODES`."""
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return UNEXPECTED


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error(exc: OSError) -> tuple[str, str]:
    where = f" '{exc.filename}'" if exc.filename else ""
    what = exc.strerror or _first_line(exc)
    if exc.errno == errno.ENOSPC:
        return f"{what}{where}", "free some disk space or write somewhere else"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}{where}", "check the permissions, or write somewhere else"
    return f"{what}{where}", "check the path"


def describe(exc: BaseException) -> tuple[str, str | None]:
    """(one-line cause, next step or None) for an exception that reached the top."""
    if isinstance(exc, ModelportError):
        return exc.message, None  # the message already says what to do
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, MemoryError):
        return "out of memory", "try smaller batch sizes or fewer samples"
    where = type(exc).__module__.split(".")[0]
    origin = "" if where == "builtins" else f"{where}."
    return (
        f"unexpected {origin}{type(exc).__name__}: {_first_line(exc)}",
        "if it came from your model's code or data, fix it there; otherwise it is a modelport "
        "bug: rerun with --debug (or MODELPORT_DEBUG=1) and report the traceback",
    )


def handle(exc: BaseException, debug: bool, err: object) -> int:
    """Print ``exc`` for a person (and its traceback with ``debug``); return the exit code."""
    import traceback

    from rich.markup import escape

    from .ui import console_err

    code = exit_code(exc)
    if debug and not isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        err.write("".join(traceback.format_exception(exc)))  # type: ignore[attr-defined]
    if isinstance(exc, click.ClickException):
        exc.show(file=err)  # type: ignore[arg-type]
        return code
    if isinstance(exc, click.exceptions.Abort):
        console_err.print("aborted")
        return code
    if isinstance(exc, KeyboardInterrupt):
        console_err.print("interrupted; nothing was written")
        return code
    cause, step = describe(exc)
    console_err.print(f"[bold red]error:[/] {escape(cause)}", highlight=False)
    if step:
        console_err.print(f"  next: {step}", highlight=False, markup=False)
    return code
