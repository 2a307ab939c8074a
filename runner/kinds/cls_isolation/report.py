"""The token-mixing section of the report: Table 1, the isolation curve behind it, and
Figure 6 (the head's accuracy on each single patch token)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import curves, new_figure, side_legend
from runner.present.paper import TABLE1, paper_number
from runner.present.tables import TOPK_LABEL, Table, cell_frame, metric_cell
from runner.results.intervals import ACCURACY_NAMES
from runner.results.study import StudyData

KIND = "cls_isolation"
#: Metric variants that reduce the per-position ("patch") accuracy over positions.
DERIVED = {"patch_average": ("patch", "average"), "patch_maximum": ("patch", "maximum")}
_TABLE1_COLUMNS = {"natural": "Natural", "isolated": "Isolating CLS",
                   "patch_average": "Patch Average", "patch_maximum": "Patch Maximum",
                   "patch_mean_token": "Head on mean patch token"}


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
    for key in data.done(KIND)["key"]:
        task = rows[(rows["task_key"] == key) & rows["name"].isin(ACCURACY_NAMES)]
        measured = sorted(task.loc[task["variant"] == "isolated", "x"].dropna().unique())
        layer = table1_insertion_layer(data.params(key), measured, data.info(key).get("depth"))
        model = task["model"].iloc[0] if not task.empty else None
        group = _table1_group(data.labels[key], layer, measured)
        for variant, column in _TABLE1_COLUMNS.items():
            chosen = task[task["variant"] == variant]
            if variant == "isolated":
                chosen = chosen[chosen["x"] == layer]
            for metric in chosen.itertuples():
                paper = paper_number(data.paper(model), lambda label, m=metric: TABLE1.get(
                    label, {}).get((m.name, m.variant)))
                cells.append(metric_cell(metric, group, TOPK_LABEL[metric.name], column, paper))
    return cell_frame(cells)


def isolation_curve(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against insertion layer L per cls_isolation task (the curve behind Table 1)."""
    cells = []
    for key in data.done(KIND)["key"]:
        task = rows[(rows["task_key"] == key) & (rows["variant"] == "isolated")
                    & rows["name"].isin(ACCURACY_NAMES)].sort_values("x")
        for metric in task.itertuples():
            cells.append(metric_cell(metric, data.labels[key], f"L={metric.x:g}",
                                     TOPK_LABEL[metric.name], None))
    return cell_frame(cells)


def isolation_curve_figure(
    curve: pd.DataFrame, natural: pd.DataFrame, styles: dict[str, dict[str, Any]]
) -> Figure:
    """Accuracy against the insertion layer L of the CLS token; dotted lines: natural accuracy.

    ``curve`` has label, name (top1/top5), x (L), value, ci_low, ci_high; ``natural`` has
    label, name, value.
    """
    figure = new_figure(9.5, 3.6)
    axes = figure.subplots(1, 2, sharex=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.15, wspace=0.22)
    for ax, name, title in zip(axes, ("top1", "top5"), ("Top-1", "Top-5"), strict=True):
        curves(ax, curve[curve["name"] == name], styles)
        for row in natural[natural["name"] == name].itertuples():
            ax.axhline(row.value, color=styles[row.label]["color"], linestyle=":",
                       linewidth=1.0, alpha=0.8)
        ax.set_title(f"{title} accuracy with the CLS token isolated")
        ax.set_xlabel("insertion layer L (CLS meets the patches in blocks L..end)")
        ax.set_ylabel(f"{title} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    side_legend(figure, axes, title="dotted: natural", title_fontsize=8)
    return figure


# ----------------------------------------------------------------------------- Figure 6


def patch_positions(data: StudyData, rows: pd.DataFrame) -> pd.DataFrame:
    """Per-position accuracy of the head on single patch tokens, with intervals."""
    chosen = rows[(rows["variant"] == "patch") & rows["name"].isin(ACCURACY_NAMES)]
    return cell_frame([metric_cell(r, data.labels[r.task_key], f"position {int(r.position)}",
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


def patch_heatmap_figure(grids: list[tuple[str, np.ndarray]]) -> Figure:
    """Figure 6: top-1 accuracy of the classification head on each single patch token, per
    model, on the patch grid; the box marks the best position ("Patch Maximum")."""
    count = len(grids)
    panel, bar = min(3.2, 12.0 / count), 1.2  # inches: each map, the colour bar and its label
    width = panel * count + bar
    figure = new_figure(width, 3.6)
    axes = np.atleast_1d(figure.subplots(1, count))
    figure.subplots_adjust(left=0.1 / width, right=1 - bar / width, top=0.84, bottom=0.03,
                           wspace=0.1)
    finite = np.concatenate([g[np.isfinite(g)].ravel() for _, g in grids])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    image = None
    for ax, (label, grid) in zip(axes, grids, strict=True):
        image = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.grid(False)
        row, col = np.unravel_index(np.nanargmax(grid), grid.shape)
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#ff3b30",
                               linewidth=2))
        ax.set_title(f"{label}\nmean {np.nanmean(grid):.1f}%, best {grid[row, col]:.1f}%")
        ax.set_xticks([])
        ax.set_yticks([])
        if grid.size <= 64:
            for (r, c), value in np.ndenumerate(grid):
                ax.text(c, r, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value < (vmin + vmax) / 2 else "black")
    scale = figure.add_axes((1 - (bar - 0.25) / width, 0.1, 0.15 / width, 0.68))
    figure.colorbar(image, cax=scale, label="top-1 accuracy (%)")
    return figure


# ------------------------------------------------------------------------------ section


def _isolation(ctx: SectionContext, rows: pd.DataFrame) -> None:
    """The isolation curve as a figure and a (folded) table, when any L was measured."""
    data = ctx.data
    curve = isolation_curve(data, rows)
    if curve.empty:
        return
    natural = rows[(rows["variant"] == "natural") & rows["name"].isin(ACCURACY_NAMES)]
    ctx.figure(
        isolation_curve_figure(curve.assign(label=curve["group"]),
                               natural.assign(label=[data.labels[k] for k in natural["task_key"]]),
                               ctx.styles),
        "isolation_curve",
        "Accuracy when the CLS token meets the patch tokens only from block L on (L = 0: "
        "the unmodified model). The paper's claim: accuracy stays high until L = depth-1, "
        "because the CLS token gathers global information only in the last block.")
    ctx.table(Table("isolation_curve", "Accuracy against insertion layer L (table)", curve),
              folded=True)


def _figure6(ctx: SectionContext, done: pd.DataFrame, rows: pd.DataFrame) -> None:
    """Figure 6 and its (folded) table, or a note when no per-position accuracy was stored."""
    data = ctx.data
    grids = [(data.labels[k], grid) for k in done["key"]
             if (grid := patch_accuracy_grid(data, k)) is not None]
    if not grids:
        ctx.note("No per-position accuracy was stored (patch heads off), so Figure 6 is "
                 "skipped.")
        return
    ctx.figure(
        patch_heatmap_figure([(label, grid[0]) for label, grid in grids]),
        "figure6_patch_accuracy",
        "Figure 6: top-1 accuracy of the unchanged classification head applied to each patch "
        "token alone, on the patch grid (red box: the best position, 'Patch Maximum'). A "
        "flat map means the last block gave every token the same information.")
    ctx.table(Table("patch_accuracy", "Per-position accuracy (table)",
                    patch_positions(data, rows)), folded=True)


def build(ctx: SectionContext) -> None:
    """Table 1, the isolation curve, then Figure 6."""
    done = ctx.done()
    if done is None:
        return
    rows = ctx.intervals(derived=DERIVED)
    ctx.table(Table(
        "table1", "Table 1: accuracy with the CLS token isolated and with the head on single "
        "patches", table1(ctx.data, rows),
        "Each cell: measured accuracy (%) [95% bootstrap interval], and the paper's ViT-B/16 "
        "number where the model is one the paper measured."))
    _isolation(ctx, rows)
    _figure6(ctx, done, rows)


SECTION = ReportSection(
    id="token-mixing",
    title="Last-layer token mixing (Table 1, Figure 6)",
    intro=(
        "<b>Isolating CLS</b>: the CLS token runs alone through blocks [0, L), the patch tokens "
        "without it; both meet from block L on. <b>Patch Average / Maximum</b>: the unchanged "
        "classification head applied to each patch token on its own; the mean over positions "
        "and the best position. <b>Head on mean patch token</b>: the head on the average patch "
        "token (the authors' code). The paper (ViT-B/16): accuracy stays high when CLS joins "
        "only at the last block, and single patches classify almost as well as CLS: the last "
        "block mixes tokens like global pooling."),
    build=build,
    order=20,
)
