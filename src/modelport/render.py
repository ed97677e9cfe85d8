"""Markdown and HTML for the reports modelport writes (``bench --report``, plan's report.md and
report.html): one table renderer per format and one self-contained HTML page, so that every
report escapes its cells, lays out its tables and embeds its plots the same way.

Cells are given as text (each report formats its own numbers). Only the standard library is
imported.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

__all__ = ["STYLE", "html_page", "html_table", "markdown_table", "md_cell", "png_img"]

# the page style of every report; a report adds its own rules after it
STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}"
)


def md_cell(text: object) -> str:
    """``text`` as one Markdown table cell: pipes escaped, line breaks as spaces."""
    return str(text).replace("|", "\\|").replace("\r", "").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The lines of a Markdown (GitHub) table."""
    lines = ["| " + " | ".join(md_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines


def html_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table, every cell escaped; ``row_classes``: a CSS class per row ("" for none)."""
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in columns) + "</tr>"]
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes is not None else ""
        attr = f" class='{e(cls)}'" if cls else ""
        out.append(f"<tr{attr}>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def png_img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI (the page stays one file)."""
    data = base64.b64encode(png).decode()
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def html_page(title: str, body: str, style: str = "") -> str:
    """A self-contained HTML page: ``body`` is HTML; ``style`` is added to :data:`STYLE`."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}{style}</style></head>"
        f"<body>{body}</body></html>"
    )
