"""The low-pass section of the report: accuracy against the filter radius, one figure per
filter, and the table of every point."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import curves, new_figure, side_legend
from runner.present.tables import TOPK_LABEL, Table, cell_frame, metric_cell
from runner.results.study import StudyData

KIND = "lowpass"
_FILTER_ORDER = {"lowpass": 0, "gaussian": 1, "highpass": 2}


def lowpass_points(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Filtered accuracy per task, filter variant and radius, raw and normalized, with CIs;
    ``group`` is the task label, ``row`` the variant and radius."""
    cells = []
    for key in data.done(KIND)["key"]:
        task = rows[(rows["task_key"] == key) & rows["x"].notna()]
        task = task.assign(_order=task["variant"].map(_FILTER_ORDER).fillna(len(_FILTER_ORDER)))
        task = task.sort_values(["_order", "variant", "x"]).drop(columns="_order")
        for metric in task.itertuples():
            column = TOPK_LABEL[metric.name[:4]] + (" (norm.)" if "norm" in metric.name else "")
            cells.append(metric_cell(metric, data.labels[key], f"{metric.variant} r={metric.x:g}",
                                     column, None))
    frame = cell_frame(cells)
    frame["family"] = [data.family(m) for m in frame["model"]] if len(frame) else []
    return frame


def filter_curves_figure(
    points: pd.DataFrame, variant: str, styles: dict[str, dict[str, Any]]
) -> Figure:
    """Accuracy against filter radius for one filter ``variant``: raw (left) and normalized by
    the unfiltered accuracy (right), top-1 above and top-5 below, one line per model.

    ``points`` has label, name (top1, top5, top1_norm, top5_norm), x, value, ci_low, ci_high.
    """
    figure = new_figure(9.5, 6.4)
    axes = figure.subplots(2, 2, sharex=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.08, wspace=0.2,
                           hspace=0.2)
    unit = "sigma (cycles/image)" if variant == "gaussian" else "radius r (cycles/image)"
    kept = "kept" if variant in ("lowpass", "gaussian") else "removed"
    for row, k in enumerate(("top1", "top5")):
        for col, name in enumerate((k, f"{k}_norm")):
            ax = axes[row, col]
            curves(ax, points[points["name"] == name], styles)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter("{x:g}")
            ax.xaxis.set_minor_locator(NullLocator())
            top = "Top-1" if k == "top1" else "Top-5"
            if col == 0:
                ax.set_ylabel(f"{top} accuracy (%)")
                ax.set_title(f"{top}, {variant} input")
            else:
                ax.axhline(100, color="#999999", linewidth=0.8, linestyle=":")
                ax.set_ylabel(f"{top} as % of unfiltered")
                ax.set_title(f"{top}, normalized by the unfiltered accuracy")
            if row == 1:
                ax.set_xlabel(f"{unit}; frequencies up to r {kept}")
    side_legend(figure, axes.flat)
    for ax in axes[:, 1]:
        if not ax.get_legend_handles_labels()[0]:  # every normalized value undefined
            ax.text(0.5, 0.5, "undefined: the unfiltered accuracy is 0", ha="center",
                    va="center", transform=ax.transAxes, color="#666666")
    return figure


def build(ctx: SectionContext) -> None:
    """One figure per filter variant, then every point as a (folded) table."""
    if ctx.done() is None:
        return
    points = lowpass_points(ctx.data, ctx.intervals())
    if points.empty:
        ctx.note("The low-pass tasks stored no filtered accuracy.")
        return
    for variant in dict.fromkeys(points["variant"]):
        subset = points[points["variant"] == variant]
        ctx.figure(
            filter_curves_figure(subset.assign(label=subset["group"]), variant, ctx.styles),
            f"{variant}_curves",
            f"Accuracy on {variant}-filtered inputs against the filter radius, raw (left) and "
            "as % of the unfiltered accuracy (right). Solid/round: ViTs; dashed/square: CNNs. "
            "The paper's claim: ViT accuracy falls far less than CNN accuracy as high "
            "frequencies are removed.")
    ctx.table(Table("lowpass", "Accuracy per radius (table)", points), folded=True)


SECTION = ReportSection(
    id="lowpass",
    title="Low-pass filtering",
    intro=(
        "An ideal circular low-pass filter in the centred 2-D FFT of each channel of the "
        "model-sized input keeps frequencies up to radius r cycles per image (this project's "
        "definition; the paper publishes none). High-pass removes them instead; the Gaussian "
        "option uses sigma in cycles."),
    build=build,
    order=40,
)
