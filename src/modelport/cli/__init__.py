"""The ``modelport`` command line: thin wrappers that parse arguments into the same config
objects the Python API takes, then call the public function.

Exit codes: 0 ok, 1 a check failed (verification, budget), 2 bad usage or input.
Subcommands live in their own modules and are imported only when used, so ``modelport --help``
stays fast and an extra that is not installed only affects its own command.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

import click

from .. import __version__
from ..errors import ModelportError

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
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelport")
def cli() -> None:
    """modelport: convert, verify, optimize, bench and serve ONNX model packages."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 failed check, 2 usage/input error)."""
    from .ui import console_err

    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="modelport",
            standalone_mode=False,
        )
    except ModelportError as exc:
        console_err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Abort:
        console_err.print("aborted")
        return 130
    except KeyboardInterrupt:
        console_err.print("interrupted; nothing was written")
        return 130
    return int(rv or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
