"""The paper's tables as tidy pandas DataFrames built from metric rows, and their Markdown form.

Every table is long-form, one row per cell: ``group`` (a block of rows: a model, a family),
``row``, ``column``, the measured ``value``, its bootstrap interval ``ci_low``/``ci_high``
(NaN where no per-image correctness is stored), the paper's number ``paper`` with
``paper_model`` and ``paper_match`` (``exact`` weights or same ``architecture``), and the
identifying columns of the metric it came from (``task_key``, ``model``, ``name``,
``variant``, ``x``...). CSV files hold exactly this; Markdown and HTML pivot it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from runner.report.bootstrap import N_BOOT, PairedBootstrap
from runner.report.paper import TABLE1, TABLE2
from runner.report.study import Correctness, StudyData, parse_array_name

CELL_COLUMNS = ("group", "row", "column", "value", "ci_low", "ci_high", "paper", "paper_model",
                "paper_match")
#: The unmodified variant each kind normalizes by.
REFERENCE_VARIANT = {"fgbg": "full", "lowpass": "natural", "cls_isolation": "natural"}
ACCURACY_NAMES = ("top1", "top5")
NORMALIZED_NAMES = ("top1_norm", "top5_norm")
TOPK_LABEL = {"top1": "Top-1", "top5": "Top-5"}
_FILTER_ORDER = {"lowpass": 0, "gaussian": 1, "highpass": 2}
FAMILY_GROUP = {"ViT": "ViTs", "CNN": "CNNs", "other": "Other models"}


@dataclass
class Table:
    """A finished table: its file stem, title, long-form cells and how to read it."""

    name: str
    title: str
    cells: pd.DataFrame
    caption: str = ""
    decimals: int = 2


# ------------------------------------------------------------------- intervals per metric


def with_intervals(
    data: StudyData, kind: str, *, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """The kind's accuracy metric rows (``top1``/``top5`` and their ``_norm``) with 95%
    bootstrap intervals from each task's stored ``correct`` arrays."""
    frames = []
    for key in data.done(kind)["key"]:
        rows = data.task_metrics(key)
        rows = rows[rows["name"].isin(ACCURACY_NAMES + NORMALIZED_NAMES)].copy()
        rows["ci_low"], rows["ci_high"] = np.nan, np.nan
        correct = data.correct(key)
        if correct is not None and not rows.empty:
            arrays = {n: a for n, a in correct.arrays.items()
                      if parse_array_name(n) is not None and a.ndim in (1, 2)}
            boot = PairedBootstrap(arrays, n_boot=n_boot, seed=seed) if arrays else None
            if boot is not None:
                bounds = [_row_interval(r, kind, correct, boot) for r in rows.itertuples()]
                rows["ci_low"] = [b[0] for b in bounds]
                rows["ci_high"] = [b[1] for b in bounds]
        frames.append(rows)
    return _concat(frames, list(data.metrics.columns) + ["ci_low", "ci_high"])


def _row_interval(
    row: Any, kind: str, correct: Correctness, boot: PairedBootstrap
) -> tuple[float, float]:
    """The interval of one metric row, or NaNs when its arrays are not stored."""
    nan = (math.nan, math.nan)
    k = row.name[:4]
    x = None if pd.isna(row.x) else float(row.x)
    if row.name in NORMALIZED_NAMES:
        num = correct.name(row.variant, k, x)
        den = correct.name(REFERENCE_VARIANT.get(kind, "natural"), k)
        return boot.ratio(num, den) if num in boot and den in boot else nan
    if row.variant in ("patch_average", "patch_maximum", "patch"):
        name = correct.name("patch", k)
        if name is None or name not in boot or boot.samples(name).ndim != 2:
            return nan
        if row.variant == "patch_average":
            return boot.position_average(name)
        if row.variant == "patch_maximum":
            return boot.position_maximum(name)
        position = int(row.position)
        return (boot.position_accuracy(name, position)
                if position < boot.samples(name).shape[1] else nan)
    name = correct.name(row.variant, k, x)
    return boot.accuracy(name) if name in boot and boot.samples(name).ndim == 1 else nan


# ------------------------------------------------------------------------------ Table 1


def table1_insertion_layer(params: dict[str, Any], layers: list[float],
                           depth: int | None = None) -> float | None:
    """The insertion layer of Table 1's "Isolating CLS" column: L = depth - 1 (the paper's
    "layer 12" of a 12-block ViT), whatever layers were measured; None when the depth is unknown.

    ``depth`` is the one the task recorded; older tasks did not, and then only the kind's default
    sweep (``layers`` unset: every L in 0..depth) tells it, as its largest L.
    """
    if depth is None and params.get("layers") is None and layers:
        depth = int(max(layers))
    return None if depth is None else float(depth - 1)


def _table1_group(label: str, layer: float | None, measured: list[float]) -> str:
    """The header of a task's rows in Table 1: where CLS joins, or why that is not shown."""
    if layer is not None and layer in measured:
        return f"{label}: CLS joins at layer L={layer:g}"
    shown = ", ".join(f"{x:g}" for x in measured) or "none"
    if layer is None:
        return (f"{label}: Isolating CLS not shown, the model's depth was not recorded "
                f"(layers measured: {shown})")
    return (f"{label}: Isolating CLS not measured at L = depth - 1 = {layer:g} "
            f"(layers measured: {shown})")


def table1(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Table 1 per cls_isolation task: rows Top-1/Top-5; Natural, Isolating CLS (at L = depth - 1),
    Patch Average, Patch Maximum and head(mean of patch tokens), with the paper's ViT-B/16
    numbers."""
    cells = []
    for key in data.done("cls_isolation")["key"]:
        task = rows[(rows["task_key"] == key) & rows["name"].isin(ACCURACY_NAMES)]
        measured = sorted(task.loc[task["variant"] == "isolated", "x"].dropna().unique())
        layer = table1_insertion_layer(data.params(key), measured, data.info(key).get("depth"))
        model = task["model"].iloc[0] if not task.empty else None
        group = _table1_group(data.labels[key], layer, measured)
        columns = {"natural": "Natural", "isolated": "Isolating CLS",
                   "patch_average": "Patch Average", "patch_maximum": "Patch Maximum",
                   "patch_mean_token": "Head on mean patch token"}
        for variant, column in columns.items():
            chosen = task[task["variant"] == variant]
            if variant == "isolated":
                chosen = chosen[chosen["x"] == layer]
            for metric in chosen.itertuples():
                paper = _paper_number(data, model, lambda label, m=metric: TABLE1.get(
                    label, {}).get((m.name, m.variant)))
                cells.append(_cell(metric, group, TOPK_LABEL[metric.name], column, paper))
    return _cells(cells)


def isolation_curve(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against insertion layer L per cls_isolation task (the curve behind Table 1)."""
    cells = []
    for key in data.done("cls_isolation")["key"]:
        task = rows[(rows["task_key"] == key) & (rows["variant"] == "isolated")
                    & rows["name"].isin(ACCURACY_NAMES)].sort_values("x")
        for metric in task.itertuples():
            cells.append(_cell(metric, data.labels[key], f"L={metric.x:g}",
                               TOPK_LABEL[metric.name], None))
    return _cells(cells)


def patch_positions(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-position accuracy of the head on single patch tokens, with intervals."""
    chosen = rows[(rows["variant"] == "patch") & rows["name"].isin(ACCURACY_NAMES)]
    return _cells([_cell(r, data.labels[r.task_key], f"position {int(r.position)}",
                         TOPK_LABEL[r.name], None) for r in chosen.itertuples()])


def patch_accuracy_grid(data: StudyData, key: str) -> np.ndarray | None:
    """(2, gh, gw) per-position top-1/top-5 accuracy of a cls_isolation task, from its metric
    rows; the grid's shape comes from the stored ``patch_accuracy`` array (square otherwise)."""
    rows = data.task_metrics(key)
    rows = rows[(rows["variant"] == "patch") & rows["name"].isin(ACCURACY_NAMES)]
    if rows.empty:
        return None
    positions = int(rows["position"].max()) + 1
    shape = _grid_shape(data, key, positions)
    grid = np.full((2, positions), np.nan)
    for metric in rows.itertuples():
        grid[ACCURACY_NAMES.index(metric.name), int(metric.position)] = metric.value
    return grid.reshape(2, *shape)


def _grid_shape(data: StudyData, key: str, positions: int) -> tuple[int, int]:
    path = data.first_file(key, "patch_accuracy")
    if path is not None and path.is_file():
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape[-2:]
        if shape[0] * shape[1] == positions:
            return int(shape[0]), int(shape[1])
    side = math.isqrt(positions)
    return (side, side) if side * side == positions else (1, positions)


# ------------------------------------------------------------------------------ Table 2


def table2(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2: raw top-5 on full images, normalized top-5 on foreground-only and
    background-only images; one row per model, ViTs and CNNs grouped; the paper beside."""
    wanted = {("top5", "full"): "Full image (top-5)",
              ("top5_norm", "fg"): "Foreground (norm. top-5)",
              ("top5_norm", "bg"): "Background (norm. top-5)"}
    paper_key = {"full": "full", "fg": "fg", "bg": "bg"}
    return _per_model_table(data, rows, "fgbg", wanted, lambda m: lambda label: TABLE2.get(
        label, {}).get(paper_key[m.variant]))


def fgbg_raw(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Raw top-1 and top-5 accuracy on full, foreground-only and background-only images."""
    names = {"full": "Full", "fg": "Foreground", "bg": "Background"}
    wanted = {(k, v): f"{TOPK_LABEL[k]} {n}" for k in ACCURACY_NAMES for v, n in names.items()}
    return _per_model_table(data, rows, "fgbg", wanted, None)


def _per_model_table(
    data: StudyData,
    rows: pd.DataFrame,
    kind: str,
    wanted: dict[tuple[str, str], str],
    paper_of: Callable[[Any], Callable[[str], float | None]] | None,
) -> pd.DataFrame:
    """One row per task of ``kind`` grouped by family; columns from (name, variant) pairs."""
    cells = []
    for task in data.done(kind).itertuples():
        group = FAMILY_GROUP[data.family(task.model)]
        metrics = rows[rows["task_key"] == task.key]
        for (name, variant), column in wanted.items():
            chosen = metrics[(metrics["name"] == name) & (metrics["variant"] == variant)]
            for metric in chosen.itertuples():
                paper = None if paper_of is None else _paper_number(
                    data, task.model, paper_of(metric))
                cells.append(_cell(metric, group, data.labels[task.key], column, paper))
    return _cells(cells)


# ----------------------------------------------------------------------------- low-pass


def lowpass_points(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Filtered accuracy per task, filter variant and radius, raw and normalized, with CIs;
    ``group`` is the task label, ``row`` the variant and radius."""
    cells = []
    for key in data.done("lowpass")["key"]:
        task = rows[(rows["task_key"] == key) & rows["x"].notna()]
        task = task.assign(_order=task["variant"].map(_FILTER_ORDER).fillna(len(_FILTER_ORDER)))
        task = task.sort_values(["_order", "variant", "x"]).drop(columns="_order")
        for metric in task.itertuples():
            column = TOPK_LABEL[metric.name[:4]] + (" (norm.)" if "norm" in metric.name else "")
            cells.append(_cell(metric, data.labels[key], f"{metric.variant} r={metric.x:g}",
                               column, None))
    frame = _cells(cells)
    frame["family"] = [data.family(m) for m in frame["model"]] if len(frame) else []
    return frame


# ------------------------------------------------------------------------- spatial drop


def spatial_linearity(data: StudyData) -> pd.DataFrame:
    """R^2 of a line through each layer's mean count/sum-ratio curve (appendix F)."""
    cells = []
    names = {"count": "Active-patch count R²", "sum": "Activation sum R²"}
    for key in data.done("spatial_drop")["key"]:
        rows = data.task_metrics(key, "linearity_r2").sort_values(["layer", "variant"])
        for metric in rows.itertuples():
            cells.append(_cell(metric, data.labels[key], f"layer {int(metric.layer)}",
                               names.get(metric.variant, str(metric.variant)), None))
    return _cells(cells)


def spatial_curves(data: StudyData) -> pd.DataFrame:
    """Per-layer mean count and sum ratios against the percent of active patches dropped."""
    frames = []
    for key in data.done("spatial_drop")["key"]:
        rows = data.task_metrics(key)
        rows = rows[rows["name"].isin(("count_ratio", "sum_ratio"))
                    & (rows["variant"] == "layer_mean")]
        frames.append(rows.assign(label=data.labels[key]).sort_values(["name", "layer", "x"]))
    return _concat(frames, list(data.metrics.columns) + ["label"])


# ---------------------------------------------------------------------------- visualize


def visualize_activations(data: StudyData) -> pd.DataFrame:
    """The final objective (mean patch activation) of every visualized feature."""
    cells = []
    for key in data.done("visualize")["key"]:
        rows = data.task_metrics(key, "activation")
        rows = rows[rows["variant"].isna()].sort_values(["layer", "feature"])
        cells += [_cell(r, data.labels[key], f"layer {int(r.layer)}", f"feature {int(r.feature)}",
                        None) for r in rows.itertuples()]
    return _cells(cells)


# ------------------------------------------------------------------------------ helpers


def _paper_number(
    data: StudyData, model: str | None, lookup: Callable[[str], float | None]
) -> tuple[float, str, str] | None:
    """(number, paper model label, match) where the study model is one the paper measured."""
    match = data.paper(model) if model else None
    if match is None:
        return None
    number = lookup(match.model.label)
    return None if number is None else (number, match.model.label, match.match)


def _cell(metric: Any, group: str, row: str, column: str,
          paper: tuple[float, str, str] | None) -> dict[str, Any]:
    record = metric._asdict()
    record.pop("Index", None)
    record.update(group=group, row=row, column=column,
                  ci_low=getattr(metric, "ci_low", math.nan),
                  ci_high=getattr(metric, "ci_high", math.nan),
                  paper=paper[0] if paper else math.nan,
                  paper_model=paper[1] if paper else None,
                  paper_match=paper[2] if paper else None)
    return record


def _cells(records: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=list(CELL_COLUMNS))
    rest = [c for c in frame.columns if c not in CELL_COLUMNS]
    return frame[list(CELL_COLUMNS) + rest]


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
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


def cell_text(cell: pd.Series, decimals: int = 2) -> CellText | None:
    """The parts of a cell, or None when it has no value."""
    if pd.isna(cell["value"]):
        return None
    interval = None if pd.isna(cell["ci_low"]) else f"[{cell['ci_low']:.1f}, {cell['ci_high']:.1f}]"
    if pd.isna(cell["paper"]):
        return CellText(f"{cell['value']:.{decimals}f}", interval)
    mark = "†" if cell["paper_match"] == "architecture" else ""
    return CellText(f"{cell['value']:.{decimals}f}", interval, f"{cell['paper']:.2f}", mark)


def format_cell(cell: pd.Series, decimals: int = 2) -> str:
    """``value [low, high] (paper P)`` with a dagger when the paper measured other weights."""
    parts = cell_text(cell, decimals)
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
        values = [format_cell(cells[c], table.decimals) if c in cells else "—" for c in columns]
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
