"""One Markdown/HTML renderer for every report (bench --report, plan's report.md/.html)."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

from modelport.render import html_page, html_table, markdown_table, md_cell, png_img


def test_markdown_table_escapes_every_cell():
    lines = markdown_table(["a|b", "c"], [["x|y", "two\nlines"], [1, None]])
    assert lines == ["| a\\|b | c |", "|---|---|", "| x\\|y | two lines |", "| 1 | None |"]
    assert md_cell("a|b\r\nc") == "a\\|b c"


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str | None, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append((dict(attrs).get("class"), []))

    def handle_data(self, data):
        if self.rows:
            self.rows[-1][1].append(data)


def test_html_table_escapes_and_marks_rows():
    out = html_table(["name", "<b>"], [["<script>", "1 & 2"], ["ok", "3"]], ["win", ""])
    assert "<script>" not in out and "&lt;script&gt;" in out
    parsed = _Cells()
    parsed.feed(out)
    assert parsed.rows == [
        (None, ["name", "<b>"]),
        ("win", ["<script>", "1 & 2"]),
        (None, ["ok", "3"]),
    ]


def test_page_embeds_the_plot_and_keeps_the_shared_style():
    png = b"\x89PNG\r\n\x1a\nfake"
    page = html_page("A & B", "<h1>x</h1>" + png_img(png, "plots"), style="tr.win{color:red}")
    assert page.startswith("<!doctype html>") and page.endswith("</body></html>")
    assert "<title>A &amp; B</title>" in page
    assert "border-collapse:collapse" in page and "tr.win{color:red}" in page
    data = page.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(data) == png
