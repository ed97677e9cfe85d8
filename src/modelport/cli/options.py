"""Options that do not apply are refused, not ignored.

Each command that has modes keeps one table, option (click parameter name) -> the modes it
applies to, next to its options; :func:`refuse_inapplicable` checks every option given on the
command line against it. An option that is not in the table applies to every mode.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import click
from click.core import ParameterSource

from ..errors import UsageError

__all__ = ["given", "refuse_inapplicable"]


def given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not a default, not an
    environment variable)."""
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def _flag(ctx: click.Context, name: str) -> str:
    for p in ctx.command.params:
        if p.name == name:
            longest = max(p.opts, key=len)
            return longest
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
