"""The contrast section of the report: accuracy against the contrast factor, as a figure and a
table. Built from the rows the report read once (``ctx.data``), never from the database."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import curves, legend, new_figure
from runner.present.tables import TOPK_LABEL, Table, cell_frame, metric_cell
from runner.results.study import StudyData

KIND = "contrast"


def contrast_points(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per task and contrast factor, raw and normalized, with intervals, as table
    cells: ``group`` the task label, ``row`` the factor, high contrast first."""
    cells = []
    for key in data.done(KIND)["key"]:
        task = rows[(rows["task_key"] == key) & (rows["variant"] == "contrast")]
        for metric in task.sort_values(["x", "name"], ascending=[False, True]).itertuples():
            column = TOPK_LABEL[metric.name[:4]] + (" (norm.)" if "norm" in metric.name else "")
            cells.append(metric_cell(metric, data.labels[key], f"c={metric.x:g}", column, None))
    return cell_frame(cells)


def contrast_figure(points: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> Figure:
    """Top-1 (left) and top-5 (right) against the contrast factor, one line per task, falling
    contrast to the right; ``points`` as ``contrast_points`` gives them."""
    figure = new_figure(9.5, 3.6)
    axes = figure.subplots(1, 2, sharex=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.15, wspace=0.2)
    for ax, name in zip(axes, ("top1", "top5"), strict=True):
        chosen = points[points["name"] == name]
        curves(ax, chosen.assign(label=chosen["group"]), styles)
        ax.set_ylabel(f"{TOPK_LABEL[name]} accuracy (%)")
        ax.set_xlabel("contrast factor c (1: the natural input)")
        ax.set_title(f"{TOPK_LABEL[name]} at reduced contrast")
    axes[0].invert_xaxis()  # shared: high contrast on the left
    legend(axes[1], loc="lower left", frameon=False)
    return figure


def build(ctx: SectionContext) -> None:
    """The curves, then every point as a table."""
    if ctx.done() is None:
        return
    points = contrast_points(ctx.data, ctx.intervals("natural"))
    if points.empty:
        ctx.note("The contrast tasks stored no accuracy at any factor.")
        return
    ctx.figure(contrast_figure(points, ctx.styles), "contrast_curves",
               "Accuracy against contrast: each image scaled to m + c (x - m) about its mean m, "
               "for each factor c; shaded: 95% bootstrap intervals over images.")
    ctx.table(Table("contrast", "Accuracy per contrast factor", points,
                    "Top-1 and top-5 (%) at each contrast factor c [95% bootstrap interval]; "
                    "(norm.): as % of the natural accuracy."))


SECTION = ReportSection(
    id="contrast",
    title="Contrast",
    intro=(
        "Each model-sized input x becomes m + c (x - m), m the image's mean over its channels "
        "and pixels, for each contrast factor c: c = 1 is the natural input, c = 0 a flat grey "
        "image. A kind from the example package <code>vitstudy-contrast</code>."),
    build=build,
)
