"""The foreground/background section of the report: Table 2 and the raw accuracies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.paper import TABLE2, paper_number
from runner.present.tables import (
    FAMILY_GROUP,
    TOPK_LABEL,
    Table,
    cell_frame,
    metric_cell,
)
from runner.results.intervals import ACCURACY_NAMES
from runner.results.study import StudyData

KIND = "fgbg"
#: The unmodified variant the normalized accuracies divide by.
REFERENCE = "full"


def table2(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Table 2: raw top-5 on full images, normalized top-5 on foreground-only and
    background-only images; one row per model, ViTs and CNNs grouped; the paper beside."""
    wanted = {("top5", "full"): "Full image (top-5)",
              ("top5_norm", "fg"): "Foreground (norm. top-5)",
              ("top5_norm", "bg"): "Background (norm. top-5)"}
    paper_key = {"full": "full", "fg": "fg", "bg": "bg"}
    return _per_model_table(data, rows, wanted, lambda m: lambda label: TABLE2.get(
        label, {}).get(paper_key[m.variant]))


def fgbg_raw(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Raw top-1 and top-5 accuracy on full, foreground-only and background-only images."""
    names = {"full": "Full", "fg": "Foreground", "bg": "Background"}
    wanted = {(k, v): f"{TOPK_LABEL[k]} {n}" for k in ACCURACY_NAMES for v, n in names.items()}
    return _per_model_table(data, rows, wanted, None)


def _per_model_table(
    data: StudyData,
    rows: pd.DataFrame,
    wanted: dict[tuple[str, str], str],
    paper_of: Callable[[Any], Callable[[str], float | None]] | None,
) -> pd.DataFrame:
    """One row per fgbg task grouped by family; columns from (name, variant) pairs."""
    cells = []
    for task in data.done(KIND).itertuples():
        group = FAMILY_GROUP[data.family(task.model)]
        metrics = rows[rows["task_key"] == task.key]
        for (name, variant), column in wanted.items():
            chosen = metrics[(metrics["name"] == name) & (metrics["variant"] == variant)]
            for metric in chosen.itertuples():
                paper = None if paper_of is None else paper_number(
                    data.paper(task.model), paper_of(metric))
                cells.append(metric_cell(metric, group, data.labels[task.key], column, paper))
    return cell_frame(cells)


def _image_counts(data: StudyData, done: pd.DataFrame) -> str:
    """``label count, ...``: the images with boxes each task evaluated."""
    counts = []
    for key in done["key"]:
        rows = data.task_metrics(key, "n_images")
        if not rows.empty:
            counts.append(f"{data.labels[key]} {int(rows['value'].iloc[0])}")
    return ", ".join(counts)


def build(ctx: SectionContext) -> None:
    """Table 2, then the raw accuracies (folded)."""
    done = ctx.done()
    if done is None:
        return
    rows = ctx.intervals(REFERENCE)
    ctx.table(Table(
        "table2", "Table 2: top-5 accuracy with only the foreground or only the background",
        table2(ctx.data, rows),
        "Full image: raw top-5 (%). Foreground, Background: top-5 on the masked images as % of "
        f"the full-image top-5. Images with boxes evaluated: {_image_counts(ctx.data, done)}."))
    ctx.table(Table(
        "fgbg_raw", "Raw top-1 and top-5 accuracy on full, foreground-only and background-only "
        "images", fgbg_raw(ctx.data, rows)), folded=True)


SECTION = ReportSection(
    id="fgbg",
    title="Foreground and background (Table 2)",
    intro=(
        "Background image: every box of the image's class blacked out; foreground image: only "
        "the boxes kept. The masking happens at the image's own resolution, before resize and "
        "crop. The paper's claim: ViTs beat CNNs with the background only and with the "
        "foreground only. The paper ran on ImageNet <i>training</i> images with boxes, hence "
        "its high full-image accuracy."),
    build=build,
    order=30,
)
