"""Options that do not apply are refused, not ignored.

Each command that has modes keeps one table, option (click parameter name) -> the modes it
applies to, next to its options; :func:`refuse_inapplicable` checks every option given on the
command line against it. An option that is not in the table applies to every mode.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import click
from click.core import ParameterSource

from ..errors import UsageError

__all__ = [
    "AliasedOption",
    "engine_option",
    "given",
    "output_option",
    "refuse_inapplicable",
]


class AliasedOption(click.Option):
    """An option whose old spellings still work but are not shown in --help, so that every
    command spells the same thing the same way (``-o/--output``, ``--json``) without breaking
    scripts: ``click.option("-o", "--output", "--out", "out", cls=AliasedOption,
    hidden_aliases=("--out",))``."""

    def __init__(self, *args: Any, hidden_aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown

    def get_error_hint(self, ctx: click.Context) -> str:
        return " / ".join(f"'{o}'" for o in self.opts if o not in self.hidden_aliases)


def output_option(help: str = "Output package directory."):
    """``-o/--output`` as every command that writes a package spells it (``--out``, the old
    spelling of quantize and optimize, stays a hidden alias)."""
    return click.option(
        "-o",
        "--output",
        "--out",
        "out",
        cls=AliasedOption,
        hidden_aliases=("--out",),
        required=True,
        type=click.Path(),
        help=help,
    )


def given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not a default, not an
    environment variable)."""
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def _flag(ctx: click.Context, name: str) -> str:
    for p in ctx.command.params:
        if p.name == name:
            hidden = getattr(p, "hidden_aliases", ())
            return max((o for o in p.opts if o not in hidden), key=len)
    return name


def refuse_inapplicable(
    ctx: click.Context,
    table: Mapping[str, Collection[str]],
    mode: str,
    labels: Mapping[str, str],
    hints: Mapping[str, str] | None = None,
) -> None:
    """Raise UsageError naming the first option given on the command line that does not apply
    to ``mode``. ``labels`` turns a mode into words (e.g. "server" -> "--server URL")."""
    for name, modes in table.items():
        if mode in modes or not given(ctx, name):
            continue
        words = [labels.get(m, m) for m in modes]
        needs = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        hint = (hints or {}).get(name)
        raise UsageError(
            f"{_flag(ctx, name)} applies only with {needs}, not with {labels.get(mode, mode)}; "
            + (hint or "drop it (it would be ignored)")
        )


ENGINE_SPEC_HELP = (
    "ort, openvino, openvino:bf16 (engine[:precision]), or package (the engine and precision "
    "the package's serving section names)"
)


def engine_option(help: str, single: bool = False, name: str = "engines"):
    """``--engine SPEC[,SPEC...]`` as bench, verify, quantize and serve spell it: the checked
    specs (``cli.params.ENGINE_SPECS``), or None when not given."""
    from .params import ENGINE_SPEC, ENGINE_SPECS

    return click.option(
        "--engine",
        name,
        type=ENGINE_SPEC if single else ENGINE_SPECS,
        default=None,
        help=f"{help} {ENGINE_SPEC_HELP}.",
    )
