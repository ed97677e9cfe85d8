"""The ``modelport`` command line: thin wrappers that parse arguments into the same config
objects the Python API takes, then call the public function.

Exit codes: one table, ``cli.errors.EXIT_CODES`` (0 ok, 1 a check failed, 2 bad usage or input,
3 an unexpected error, 130 interrupted). Every error is printed as one line of cause and a next
step; ``--debug`` (or ``MODELPORT_DEBUG=1``) adds the traceback. Other libraries' output is
captured while a command runs; ``--verbose`` lets it through.
Subcommands live in their own modules and are imported only when used, so ``modelport --help``
stays fast (no numpy, no rich) and an extra that is not installed only affects its own command.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from .errors import EXIT_CODE_HELP

__all__ = ["COMMANDS", "main"]

# command name -> (module, attribute, one-line help). A plain dict: grep it.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": (
        "modelport.cli.convert_cmd",
        "convert",
        "Convert a model to a verified ONNX package.",
    ),
    "verify": ("modelport.cli.convert_cmd", "verify", "Check a package: onnx.checker and parity."),
    "inspect": (
        "modelport.cli.inspect_cmd",
        "inspect",
        "Show a package's signature, ops and history.",
    ),
    "quantize": (
        "modelport.cli.quantize_cmd",
        "quantize",
        "Quantize a package (dynamic, static, partial, fp16).",
    ),
    "prune": (
        "modelport.cli.prune_cmd",
        "prune",
        "Prune weights or whole channels, and measure it.",
    ),
    "optimize": (
        "modelport.cli.optimize_cmd",
        "optimize",
        "Graph optimizations (ORT levels, fusions).",
    ),
    "bench": (
        "modelport.cli.bench_cmd",
        "bench",
        "Latency and throughput, in-process or against a server.",
    ),
    "serve": ("modelport.cli.serve_cmd", "serve", "Serve a model repository over HTTP and gRPC."),
    "plan": ("modelport.cli.plan_cmd", "plan", "Find the best variant under a budget."),
    "package": ("modelport.cli.package_cmd", "package", "Package a model for a deployment target."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (mod, _, _) in COMMANDS.items() if importlib.util.find_spec(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        mod_name, attr, _ = COMMANDS[name]
        try:
            module = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:
                return None
            raise
        command = getattr(module, attr)
        if name not in _UNCAPTURED and not getattr(command.callback, "_captured", False):
            command.callback = _run_captured(command.callback)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# commands whose output is their own business: serve logs to stderr for as long as it runs
_UNCAPTURED = {"serve"}
# set by main() from --debug / --verbose (accepted before or after the command name)
_FLAGS = {"debug": False, "verbose": False}


def _run_captured(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command's callback with other libraries' output captured (after parsing, so that
    --help and usage errors print normally)."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        from .capture import library_output

        with library_output(_FLAGS["verbose"]) as captured:
            try:
                return callback(*args, **kwargs)
            finally:
                _report_hidden(captured)

    run._captured = True  # type: ignore[attr-defined]
    return run


def _report_hidden(captured: Any) -> None:
    if captured is None:
        return
    lines = captured.lines()
    if lines and sys.exc_info()[0] is not None:  # failing: the last lines may say why
        from .ui import real_stream

        err = real_stream("stderr")
        err.write("last lines from other libraries:\n")
        for ln in lines[-5:]:
            err.write(f"  {ln[:300]}\n")
    if lines:
        from .ui import real_stream

        real_stream("stderr").write(
            f"({len(lines)} line{'s' * (len(lines) != 1)} of output from other libraries "
            "hidden; --verbose shows them)\n"
        )


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODE_HELP,
)
@click.version_option(package_name="modelport", prog_name="modelport")
@click.option(
    "--debug",
    is_flag=True,
    help="Show the traceback of an error (or set MODELPORT_DEBUG=1). Also accepted after the "
    "command name.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Let other libraries' output (exporter progress, warnings, progress bars) through. "
    "Also accepted after the command name.",
)
def cli(debug: bool, verbose: bool) -> None:
    """modelport: convert, verify, optimize, bench and serve ONNX model packages."""
    _FLAGS["debug"] = _FLAGS["debug"] or debug
    _FLAGS["verbose"] = _FLAGS["verbose"] or verbose


def _global_flags(args: list[str]) -> list[str]:
    """Take --debug / --verbose out of ``args`` wherever they are (before a ``--``)."""
    out = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        if a in ("--debug", "--verbose"):
            _FLAGS[a[2:]] = True
            continue
        out.append(a)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (cli.errors.EXIT_CODES)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    _FLAGS.update(debug=os.environ.get("MODELPORT_DEBUG", "") not in ("", "0"), verbose=False)
    args = _global_flags(args)
    try:
        rv = cli.main(args=args, prog_name="modelport", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        from .errors import handle

        return handle(exc, _FLAGS["debug"], sys.stderr)
    return int(rv or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
