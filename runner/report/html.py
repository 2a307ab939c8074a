"""The report's single ``index.html``: sections of tables and figures, no external assets.

A small script at the end of the page counts the images that loaded and writes the counts to
``<body data-images-total data-images-loaded>``, which ``bench/report_html.py`` reads from
headless Chromium.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import pandas as pd

from runner.present.tables import Table, cell_text, wide

_CSS = """
:root { --ink:#1d2330; --muted:#6b7280; --line:#e5e7eb; --soft:#f6f7f9; --accent:#1f5fa8;
        --paper:#8a4b08; --paperbg:#fff4e5; --warn:#fff8db; --warnline:#e9c46a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 60px; }
header h1 { font-size: 26px; margin: 0 0 4px; }
header .sub { color: var(--muted); margin: 0 0 16px; }
h2 { font-size: 20px; margin: 40px 0 6px; padding-top: 12px; border-top: 2px solid var(--line); }
h3 { font-size: 15.5px; margin: 22px 0 6px; }
p { margin: 6px 0 10px; max-width: 900px; }
nav ol { columns: 2; margin: 8px 0 0; padding-left: 22px; }
nav a, a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13.5px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.group td { background: #eef3fa; font-weight: 600; color: var(--accent); }
.v { font-weight: 600; }
.ci { color: var(--muted); font-size: 12px; margin-left: 4px; }
.paper { display: block; color: var(--paper); font-size: 12px; }
.paper b { font-weight: 600; }
.files { font-size: 12.5px; color: var(--muted); margin: 2px 0 12px; }
.note { background: var(--warn); border-left: 4px solid var(--warnline); padding: 8px 12px;
        margin: 10px 0; max-width: 900px; }
.caption { color: var(--muted); font-size: 13px; max-width: 900px; }
figure { margin: 14px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; max-width: 900px; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: 10px 12px; overflow-x: auto; font-size: 12.5px; }
code { font-size: 12.5px; background: var(--soft); padding: 1px 4px; border-radius: 3px; }
.meta td, .meta th { font-size: 13px; }
.status-failed { color: #b42318; font-weight: 600; }
.status-done { color: #1a7f37; }
"""

_IMAGE_CHECK = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-loaded", String(loaded.length));
  document.body.setAttribute("data-images-broken",
    images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
          .map(function (i) { return i.getAttribute("src"); }).join(" "));
});
</script>
"""


@dataclass
class FigureFile:
    """A PNG written under the report folder."""

    path: str  # relative to the report folder
    caption: str


@dataclass
class TableBlock:
    """A table with links to its CSV and Markdown files; collapsed when ``folded``."""

    table: Table
    csv: str
    markdown: str
    folded: bool = False


@dataclass
class Section:
    """One part of the report; ``notes`` explain what is missing or skipped."""

    id: str
    title: str
    intro: str
    notes: list[str] = field(default_factory=list)
    blocks: list[TableBlock | FigureFile | str] = field(default_factory=list)  # str: raw HTML


def links_html(label: str, links: Sequence[tuple[str, str]]) -> str:
    """A line of links: ``label`` then each (text, href), escaped."""
    items = " · ".join(f'<a href="{escape(href)}">{escape(text)}</a>' for text, href in links)
    return f'<p class="files">{escape(label)} {items}</p>'


def cell_html(cell: pd.Series, decimals: int, interval_decimals: int = 1) -> str:
    """Measured value, its interval, and the paper's number under it."""
    parts = cell_text(cell, decimals, interval_decimals)
    if parts is None:
        return "—"
    text = f'<span class="v">{parts.value}</span>'
    if parts.interval:
        text += f'<span class="ci">{parts.interval}</span>'
    if parts.paper:
        tip = escape(f"{cell['paper_model']} in the paper"
                     + (" (other weights, same architecture)" if parts.mark else ""))
        text += f'<span class="paper" title="{tip}">paper <b>{parts.paper}</b>{parts.mark}</span>'
    return text


def table_html(table: Table) -> str:
    """A table with a header row per group (model or family) when groups differ from rows."""
    if table.cells.empty:
        return '<p class="caption">(no rows)</p>'
    columns, rows = wide(table.cells)
    out = ["<table>", "<thead><tr><th></th>"]
    out += [f"<th>{escape(c)}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    grouped = any(group != row for group, row, _ in rows)
    current = None
    for group, row, cells in rows:
        if grouped and group != current:
            out.append(f'<tr class="group"><td colspan="{len(columns) + 1}">{escape(group)}</td>'
                       "</tr>")
            current = group
        out.append(f"<tr><th>{escape(row)}</th>")
        digits = (table.decimals, table.interval_decimals)
        out += [f'<td class="num">{cell_html(cells[c], *digits) if c in cells else "—"}'
                "</td>" for c in columns]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def plain_table_html(frame: pd.DataFrame, classes: dict[str, dict[str, str]] | None = None) -> str:
    """A DataFrame as a simple HTML table; ``classes`` maps column -> value -> CSS class."""
    classes = classes or {}
    out = ['<table class="meta"><thead><tr>']
    out += [f"<th>{escape(str(c))}</th>" for c in frame.columns]
    out.append("</tr></thead><tbody>")
    for record in frame.itertuples(index=False):
        out.append("<tr>")
        for column, value in zip(frame.columns, record, strict=True):
            text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else value
            css = classes.get(column, {}).get(str(text), "")
            attr = f' class="{css}"' if css else ""
            out.append(f"<td{attr}>{escape(str(text))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _block_html(block: TableBlock | FigureFile | str) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, FigureFile):
        return (f'<figure><a href="{escape(block.path)}"><img src="{escape(block.path)}" '
                f'alt="{escape(block.caption)}"></a>'
                f"<figcaption>{escape(block.caption)}</figcaption></figure>")
    table = block.table
    links = (f'<p class="files">{escape(table.caption)} '
             f'Files: <a href="{escape(block.csv)}">CSV</a> · '
             f'<a href="{escape(block.markdown)}">Markdown</a></p>')
    if block.folded:
        return (f"<details><summary>{escape(table.title)}</summary>{table_html(table)}{links}"
                "</details>")
    return f"<h3>{escape(table.title)}</h3>{table_html(table)}{links}"


def render_page(title: str, subtitle: str, header_html: str, sections: list[Section],
                footer_html: str) -> str:
    """The whole page."""
    toc = "".join(f'<li><a href="#{s.id}">{escape(s.title)}</a></li>' for s in sections)
    body = []
    for section in sections:
        body.append(f'<section id="{section.id}"><h2>{escape(section.title)}</h2>')
        body.append(f"<p>{section.intro}</p>")
        body += [f'<div class="note">{escape(note)}</div>' for note in section.notes]
        body += [_block_html(block) for block in section.blocks]
        body.append("</section>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<header><h1>{escape(title)}</h1><p class='sub'>{escape(subtitle)}</p>{header_html}"
        f"<nav><ol>{toc}</ol></nav></header>{''.join(body)}"
        f"<footer class='caption'>{footer_html}</footer></main>{_IMAGE_CHECK}</body></html>"
    )
