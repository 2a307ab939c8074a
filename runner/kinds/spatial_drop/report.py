"""The spatial-information section of the report (appendix F): per task, how active-patch count
and activation sum fall as active patches are dropped, and how linear each layer's fall is."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import new_figure, side_legend
from runner.present.tables import Table, cell_frame, concat_rows, metric_cell
from runner.present.text import counters, slug
from runner.results.study import StudyData

KIND = "spatial_drop"


def spatial_linearity(data: StudyData) -> pd.DataFrame:
    """R^2 of a line through each layer's mean count/sum-ratio curve (appendix F)."""
    cells = []
    names = {"count": "Active-patch count R²", "sum": "Activation sum R²"}
    for key in data.done(KIND)["key"]:
        rows = data.task_metrics(key, "linearity_r2").sort_values(["layer", "variant"])
        for metric in rows.itertuples():
            cells.append(metric_cell(metric, data.labels[key], f"layer {int(metric.layer)}",
                                     names.get(metric.variant, str(metric.variant)), None))
    return cell_frame(cells)


def spatial_curves(data: StudyData) -> pd.DataFrame:
    """Per-layer mean count and sum ratios against the percent of active patches dropped."""
    frames = []
    for key in data.done(KIND)["key"]:
        rows = data.task_metrics(key)
        rows = rows[rows["name"].isin(("count_ratio", "sum_ratio"))
                    & (rows["variant"] == "layer_mean")]
        frames.append(rows.assign(label=data.labels[key]).sort_values(["name", "layer", "x"]))
    return concat_rows(frames, list(data.metrics.columns) + ["label"])


def spatial_drop_figure(curves: pd.DataFrame, r2: pd.DataFrame, title: str) -> Figure:
    """Appendix F for one task: active-patch count and activation sum, relative to the initial
    image, against the percent of active patches dropped, one line per layer; dashed: a
    perfectly linear (local) channel, 1 - x/100. One legend beside both panels."""
    figure = new_figure(9.5, 3.8)
    axes = figure.subplots(1, 2, sharey=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.85, bottom=0.13, wspace=0.08)
    layers = sorted(int(v) for v in curves["layer"].dropna().unique())
    cmap = matplotlib.colormaps["viridis"]
    for ax, name, what in zip(axes, ("count_ratio", "sum_ratio"),
                              ("active-patch count", "activation sum"), strict=True):
        x = np.linspace(0, 100, 11)
        ax.plot(x, 1 - x / 100, color="black", linestyle="--", linewidth=1, label="linear")
        for i, layer in enumerate(layers):
            rows = curves[(curves["name"] == name) & (curves["layer"] == layer)].sort_values("x")
            ax.plot(rows["x"], rows["value"], marker="o", markersize=3.5, linewidth=1.5,
                    color=cmap(i / max(1, len(layers) - 1) * 0.9), label=_layer_tag(r2, layer))
        ax.set_xlabel("active patches dropped (%)")
        ax.set_title(f"{what} relative to the initial image")
    axes[0].set_ylabel("ratio to the initial image")
    side_legend(figure, axes, fontsize=7.5, title="layer: R² count / sum", title_fontsize=7.5)
    middle = (axes[0].get_position().x0 + axes[1].get_position().x1) / 2
    figure.suptitle(title, fontsize=10.5, x=middle)
    return figure


def _layer_tag(r2: pd.DataFrame, layer: int) -> str:
    """A layer's legend entry, with the R² of its count and sum curves (``-`` where not
    stored)."""
    rows = r2[r2["layer"] == layer]
    scores = [f"{rows.loc[rows['variant'] == short, 'value'].iloc[0]:.3f}"
              if (rows["variant"] == short).any() else "-" for short in ("count", "sum")]
    return f"layer {layer}: {' / '.join(scores)}"


def build(ctx: SectionContext) -> None:
    """A figure per task (or a note when it stored no curves), then the linearity table."""
    done = ctx.done()
    if done is None:
        return
    data = ctx.data
    curves = spatial_curves(data)
    linearity = spatial_linearity(data)
    for key in done["key"]:
        label = data.labels[key]
        rows = curves[curves["task_key"] == key]
        if rows.empty:
            found = counters(data.tasks.loc[data.tasks["key"] == key, "info"].iloc[0])
            ctx.note(f"{label}: no per-layer curves were stored"
                     + (f" (task counters: {found})." if found else "."))
            continue
        ctx.figure(
            spatial_drop_figure(rows, linearity[linearity["task_key"] == key], label),
            f"spatial_drop_{slug(label)}",
            f"{label}: blanking x% of a feature's active patches, the number of active patches "
            "and their activation sum relative to the initial image (mean over the layer's "
            "features). Linear (R² near 1) means the channel keeps spatial information; the "
            "paper finds this in every layer but the last.")
    ctx.table(Table(
        "spatial_linearity", "Linearity per layer (R² of a line through the layer-mean curve)",
        linearity, decimals=3))


SECTION = ReportSection(
    id="spatial",
    title="Spatial information per channel (appendix F)",
    intro=(
        "For each feature, its most-activating images; patches whose activation exceeds 0.5 "
        "are active, the rest are blacked out (the initial image). Dropping x% of the active "
        "patches at random, a channel that keeps spatial information loses count and "
        "activation in proportion: a straight line."),
    build=build,
    order=50,
)
