"""Report tables as tidy pandas DataFrames, and their Markdown and CSV forms.

Every table is long-form, one row per cell: ``group`` (a block of rows: a model, a family),
``row``, ``column``, the measured ``value``, its bootstrap interval ``ci_low``/``ci_high``
(NaN where no per-image correctness is stored), the paper's number ``paper`` with
``paper_model`` and ``paper_match`` (``exact`` weights or same ``architecture``), and the
identifying columns of the metric it came from (``task_key``, ``model``, ``name``,
``variant``, ``x``...). CSV files hold exactly this; Markdown and HTML pivot it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

CELL_COLUMNS = ("group", "row", "column", "value", "ci_low", "ci_high", "paper", "paper_model",
                "paper_match")
TOPK_LABEL = {"top1": "Top-1", "top5": "Top-5"}
#: Heading of a family's block of rows in a per-model table.
FAMILY_GROUP = {"ViT": "ViTs", "CNN": "CNNs", "other": "Other models"}


@dataclass
class Table:
    """A finished table: its file stem, title, long-form cells and how to read it."""

    name: str
    title: str
    cells: pd.DataFrame
    caption: str = ""
    decimals: int = 2
    #: decimals of the intervals: 1 suits percentages; ratios and shares need as many as the
    #: values (``0.38 [0.35, 0.41]``, not ``[0.3, 0.4]``)
    interval_decimals: int = 1


# ------------------------------------------------------------------------ long-form cells


def metric_cell(metric: Any, group: str, row: str, column: str,
         paper: tuple[float, str, str] | None) -> dict[str, Any]:
    """One cell from a metric row (an ``itertuples`` row): its columns plus where it goes,
    its interval (NaN when the row has none) and the paper's (number, model, match)."""
    record = metric._asdict()
    record.pop("Index", None)
    record.update(group=group, row=row, column=column,
                  ci_low=getattr(metric, "ci_low", math.nan),
                  ci_high=getattr(metric, "ci_high", math.nan),
                  paper=paper[0] if paper else math.nan,
                  paper_model=paper[1] if paper else None,
                  paper_match=paper[2] if paper else None)
    return record


def cell_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A table's cells from ``metric_cell`` records: the cell columns first, then the metric's."""
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=list(CELL_COLUMNS))
    rest = [c for c in frame.columns if c not in CELL_COLUMNS]
    return frame[list(CELL_COLUMNS) + rest]


def concat_rows(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The non-empty ``frames`` stacked, or an empty frame with ``columns``."""
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


# ----------------------------------------------------------------------------- Markdown


@dataclass(frozen=True)
class CellText:
    """A table cell's parts as text, for every output format: the measured value, its
    interval, the paper's number, and a dagger when the paper measured other weights."""

    value: str
    interval: str | None = None
    paper: str | None = None
    mark: str = ""


def cell_text(cell: pd.Series, decimals: int = 2, interval_decimals: int = 1
              ) -> CellText | None:
    """The parts of a cell, or None when it has no value."""
    if pd.isna(cell["value"]):
        return None
    d = interval_decimals
    interval = (None if pd.isna(cell["ci_low"])
                else f"[{cell['ci_low']:.{d}f}, {cell['ci_high']:.{d}f}]")
    if pd.isna(cell["paper"]):
        return CellText(f"{cell['value']:.{decimals}f}", interval)
    mark = "†" if cell["paper_match"] == "architecture" else ""
    return CellText(f"{cell['value']:.{decimals}f}", interval, f"{cell['paper']:.2f}", mark)


def format_cell(cell: pd.Series, decimals: int = 2, interval_decimals: int = 1) -> str:
    """``value [low, high] (paper P)`` with a dagger when the paper measured other weights."""
    parts = cell_text(cell, decimals, interval_decimals)
    if parts is None:
        return "—"
    text = parts.value + (f" {parts.interval}" if parts.interval else "")
    return text + (f" (paper {parts.paper}{parts.mark})" if parts.paper else "")


def wide(cells: pd.DataFrame) -> tuple[list[str], list[tuple[str, str, dict[str, pd.Series]]]]:
    """Columns in first-seen order and (group, row, {column: cell}) rows, for rendering."""
    columns = list(dict.fromkeys(cells["column"]))
    rows: dict[tuple[str, str], dict[str, pd.Series]] = {}
    for _, cell in cells.iterrows():
        rows.setdefault((cell["group"], cell["row"]), {})[cell["column"]] = cell
    return columns, [(g, r, c) for (g, r), c in rows.items()]


def to_markdown(table: Table) -> str:
    """A Markdown table: one line per (group, row), a column per table column; every name in
    it escaped (``md_escape``)."""
    lines = [f"### {md_escape(table.title)}", ""]
    if table.cells.empty:
        return "\n".join(lines + ["(no rows)", ""])
    columns, rows = wide(table.cells)
    lines.append("| | " + " | ".join(md_escape(c) for c in columns) + " |")
    lines.append("| --- " * (len(columns) + 1) + "|")
    for group, row, cells in rows:
        head = row if group == row else f"{group} · {row}"
        values = [format_cell(cells[c], table.decimals, table.interval_decimals)
                  if c in cells else "—" for c in columns]
        lines.append(f"| {md_escape(head)} | " + " | ".join(values) + " |")
    if table.caption:
        lines += ["", md_escape(table.caption)]
    return "\n".join(lines) + "\n"


#: Markdown text -> safe text: HTML's special characters as entities (a Markdown viewer renders
#: raw HTML), table pipes and link brackets backslash-escaped, line breaks as spaces.
_MARKDOWN_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "[": "\\[", "]": "\\]",
    "\\": "\\\\", "\n": " ", "\r": " "})


def md_escape(text: Any) -> str:
    """``text`` safe anywhere in a Markdown line: no raw HTML, no cell or link breaks."""
    return str(text).translate(_MARKDOWN_ESCAPES)


#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot run as spreadsheet formulas: a string that
    starts with ``= + - @``, tab or CR gets a leading ``'``; numbers are left as they are."""

    def neutral(value: Any) -> Any:
        formula = isinstance(value, str) and value.startswith(_FORMULA_STARTS)
        return f"'{value}" if formula else value

    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(neutral).astype(object)
    safe.columns = [neutral(c) for c in safe.columns]
    return safe
