"""The report's figures, drawn with matplotlib (Agg, no pyplot) from the tables' DataFrames.

ViTs are drawn with solid lines, round markers and cool colours; CNNs with dashed lines, square
markers and warm colours, so the two families separate at a glance. Shaded bands are the 95%
bootstrap intervals where per-image correctness was stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

_VIT_COLORS = ("#1f5fa8", "#2a9d8f", "#6a4c93", "#0b8fc2", "#3d5a80", "#5c9e31")
_CNN_COLORS = ("#d1495b", "#e07a1f", "#8c564b", "#c9a227", "#b5179e", "#7f4f24")
_OTHER_COLORS = ("#555555", "#888888", "#333333")
_FAMILY_STYLE = {
    "ViT": ("-", "o", _VIT_COLORS),
    "CNN": ("--", "s", _CNN_COLORS),
    "other": (":", "^", _OTHER_COLORS),
}
_RC = {
    "font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8.5,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.6, "figure.dpi": 100,
    "text.parse_math": False,  # model names are text: a '$' in one must not start math mode
}
DPI = 110


def legend(ax: Any, **kwargs: Any) -> bool:
    """Draw ``ax``'s legend if it has labelled lines; say whether it did (matplotlib warns on an
    empty legend, e.g. when a normalized panel has nothing to plot)."""
    if not ax.get_legend_handles_labels()[0]:
        return False
    ax.legend(**kwargs)
    return True


def line_styles(labels_by_family: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Label -> matplotlib line style: a colour per model, line and marker per family."""
    styles: dict[str, dict[str, Any]] = {}
    used = {family: 0 for family in _FAMILY_STYLE}
    for label, family in labels_by_family:
        if label in styles:
            continue
        linestyle, marker, colors = _FAMILY_STYLE.get(family, _FAMILY_STYLE["other"])
        color = colors[used.get(family, 0) % len(colors)]
        used[family] = used.get(family, 0) + 1
        styles[label] = dict(color=color, linestyle=linestyle, marker=marker, markersize=4.5,
                             linewidth=1.6)
    return styles


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with the report's style (fixed margins: layout engines are slow)."""
    import matplotlib

    matplotlib.rcParams.update(_RC)
    return Figure(figsize=(width, height))


def save(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def _band(ax: Any, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str) -> None:
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=color, alpha=0.14, linewidth=0)


def _curves(ax: Any, frame: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> None:
    """One line per ``label`` of ``x`` against ``value`` with its interval band."""
    for label, rows in frame.groupby("label", sort=False):
        rows = rows.sort_values("x")
        x = rows["x"].to_numpy(float)
        style = styles[label]
        ax.plot(x, rows["value"].to_numpy(float), label=label, **style)
        _band(ax, x, rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float),
              style["color"])


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
        _curves(ax, curve[curve["name"] == name], styles)
        for row in natural[natural["name"] == name].itertuples():
            ax.axhline(row.value, color=styles[row.label]["color"], linestyle=":",
                       linewidth=1.0, alpha=0.8)
        ax.set_title(f"{title} accuracy with the CLS token isolated")
        ax.set_xlabel("insertion layer L (CLS meets the patches in blocks L..end)")
        ax.set_ylabel(f"{title} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend(axes[1], loc="lower left", frameon=False, title="dotted: natural", title_fontsize=8)
    return figure


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
        ax.add_patch(_rectangle(col, row))
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


def _rectangle(col: int, row: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#ff3b30", linewidth=2)


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
            _curves(ax, points[points["name"] == name], styles)
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
    legend(axes[0, 1], loc="lower right", frameon=False)
    for ax in axes[:, 1]:
        if not ax.get_legend_handles_labels()[0]:  # every normalized value undefined
            ax.text(0.5, 0.5, "undefined: the unfiltered accuracy is 0", ha="center",
                    va="center", transform=ax.transAxes, color="#666666")
    return figure


def spatial_drop_figure(curves: pd.DataFrame, r2: pd.DataFrame, title: str) -> Figure:
    """Appendix F for one task: active-patch count and activation sum, relative to the initial
    image, against the percent of active patches dropped, one line per layer; dashed: a
    perfectly linear (local) channel, 1 - x/100."""
    figure = new_figure(9.5, 3.8)
    axes = figure.subplots(1, 2, sharey=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.85, bottom=0.13, wspace=0.08)
    layers = sorted(int(v) for v in curves["layer"].dropna().unique())
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    for ax, name, what, short in zip(axes, ("count_ratio", "sum_ratio"),
                                     ("active-patch count", "activation sum"),
                                     ("count", "sum"), strict=True):
        x = np.linspace(0, 100, 11)
        ax.plot(x, 1 - x / 100, color="black", linestyle="--", linewidth=1, label="linear")
        for i, layer in enumerate(layers):
            rows = curves[(curves["name"] == name) & (curves["layer"] == layer)].sort_values("x")
            score = r2[(r2["layer"] == layer) & (r2["variant"] == short)]["value"]
            tag = f"layer {layer}" + (f" (R²={score.iloc[0]:.3f})" if len(score) else "")
            ax.plot(rows["x"], rows["value"], marker="o", markersize=3.5, linewidth=1.5,
                    color=cmap(i / max(1, len(layers) - 1) * 0.9), label=tag)
        ax.set_xlabel("active patches dropped (%)")
        ax.set_title(f"{what} relative to the initial image")
        legend(ax, frameon=False, fontsize=7.5)
    axes[0].set_ylabel("ratio to the initial image")
    figure.suptitle(title, fontsize=10.5)
    return figure
