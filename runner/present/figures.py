"""Figure styling shared by the report's sections, drawn with matplotlib (Agg, no pyplot).

ViTs are drawn with solid lines, round markers and cool colours; CNNs with dashed lines, square
markers and warm colours, so the two families separate at a glance. Shaded bands are the 95%
bootstrap intervals where per-image correctness was stored. A legend never covers data: figures
with several panels put one legend in a margin beside them (``side_legend``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend

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


def side_legend(figure: Figure, axes: Sequence[Any], *, pad: float = 0.2,
                **kwargs: Any) -> Legend | None:
    """One legend for ``axes`` (each label once, first handle wins) in a margin added to the
    right of the figure, so it covers no data whatever the curves do: the figure widens by the
    legend's width plus ``pad`` inches and the axes keep their size; a legend taller than the
    axes gets more columns. None (and no margin) when nothing is labelled."""
    found: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(label, handle)
    if not found:
        return None
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)  # a renderer to measure the legend with
    params = figure.subplotpars
    left, right, top, bottom = params.left, params.right, params.top, params.bottom
    width, height = figure.get_figwidth(), figure.get_figheight()
    room = (top - bottom) * height * figure.dpi
    columns = 1
    while True:
        legend = figure.legend(list(found.values()), list(found), loc="upper left",
                               bbox_to_anchor=(right, top), frameon=False, ncols=columns,
                               **kwargs)
        box = legend.get_window_extent(figure.canvas.get_renderer())
        if box.height <= room or columns >= len(found):
            break
        legend.remove()
        columns = max(columns + 1, math.ceil(columns * box.height / room))
    wider = width + pad + 1.03 * box.width / figure.dpi  # text widths vary a little with dpi
    figure.set_figwidth(wider)
    figure.subplots_adjust(left=left * width / wider, right=right * width / wider)
    legend.set_bbox_to_anchor(((right * width + pad) / wider, top), transform=figure.transFigure)
    return legend


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
    return Figure(figsize=(width, height), dpi=DPI)  # measured text is then as saved


def save(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG and release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def band(ax: Any, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str) -> None:
    """Shade an interval band around a curve, where any of its bounds is known."""
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color=color, alpha=0.14, linewidth=0)


def curves(ax: Any, frame: pd.DataFrame, styles: dict[str, dict[str, Any]]) -> None:
    """One line per ``label`` of ``x`` against ``value`` with its interval band."""
    for label, rows in frame.groupby("label", sort=False):
        rows = rows.sort_values("x")
        x = rows["x"].to_numpy(float)
        style = styles[label]
        ax.plot(x, rows["value"].to_numpy(float), label=label, **style)
        band(ax, x, rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float),
             style["color"])
