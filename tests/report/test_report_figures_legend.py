"""Legends never cover data: the low-pass (low- and high-pass), spatial-drop and CLS-isolation
figures, drawn
from rows shaped as the kinds store them, have legends whose box holds no plotted point, lies
outside every panel and inside the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from report_rows import DROP_X, fill_study

from runner.kinds.cls_isolation.report import isolation_curve_figure
from runner.kinds.lowpass.report import filter_curves_figure, lowpass_points
from runner.kinds.spatial_drop.report import spatial_curves, spatial_drop_figure, spatial_linearity
from runner.present.figures import line_styles, new_figure, side_legend
from runner.results.intervals import with_intervals
from runner.results.study import StudyData


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> StudyData:
    root = tmp_path_factory.mktemp("legend")
    filled = fill_study(f"sqlite:///{root / 'r.db'}", root / "a", n_images=60,
                        kinds=("lowpass", "spatial_drop"))
    return StudyData.load(filled.study, filled.task_keys, filled.engine, filled.store_root,
                          filled.model_names)


def _legends(figure: Figure) -> list:
    return list(figure.legends) + [ax.get_legend() for ax in figure.axes if ax.get_legend()]


def _along(points: np.ndarray, per_segment: int = 25) -> np.ndarray:
    """Points along a polyline (``per_segment`` per segment, ends included): the drawn line,
    not only its markers."""
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) < 2:
        return points
    t = np.linspace(0.0, 1.0, per_segment)[:, None, None]
    return (points[:-1][None] * (1 - t) + points[1:][None] * t).reshape(-1, 2)


def assert_legends_clear(figure: Figure) -> int:
    """Every legend of ``figure`` is inside it and clear of every panel and of every drawn line
    (points along each segment); returns how many points were checked."""
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.canvas.draw()
    legends = _legends(figure)
    assert legends, "the figure has no legend"
    checked = 0
    for legend in legends:
        box = legend.get_window_extent()
        assert box.x0 >= 0 and box.y0 >= 0, box
        assert box.x1 <= figure.bbox.x1 + 0.5 and box.y1 <= figure.bbox.y1 + 0.5, box
        for ax in figure.axes:
            assert not box.overlaps(ax.get_window_extent()), (box, ax.get_title())
            for line in ax.get_lines():
                points = _along(ax.transData.transform(line.get_xydata()))
                inside = ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                          & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1))
                assert not inside.any(), (line.get_label(), ax.get_title())
                checked += len(points)
    return checked


def _lowpass_figure(data: StudyData, variant: str) -> Figure:
    points = lowpass_points(data, with_intervals(data, "lowpass", n_boot=20))
    subset = points[points["variant"] == variant]
    styles = line_styles((label, data.family(model)) for label, model
                         in zip(subset["group"], subset["model"], strict=True))
    return filter_curves_figure(subset.assign(label=subset["group"]), variant, styles)


@pytest.mark.parametrize("variant", ["lowpass", "highpass"])
def test_lowpass_legend_covers_no_curve(data, variant):
    figure = _lowpass_figure(data, variant)
    assert assert_legends_clear(figure) >= 4 * 5  # a curve of 5 radii in each of 4 panels
    (legend,) = figure.legends
    models = {"lowpass": {"vit_b16", "vit_s", "resnet50"}, "highpass": {"vit_b16"}}[variant]
    assert {t.get_text() for t in legend.get_texts()} == models


def test_spatial_drop_legend_covers_no_curve(data):
    key = data.done("spatial_drop")["key"].iloc[0]
    curves, r2 = spatial_curves(data), spatial_linearity(data)
    figure = spatial_drop_figure(curves[curves["task_key"] == key],
                                 r2[r2["task_key"] == key], "vit_b16")
    assert assert_legends_clear(figure) >= 2 * 5 * len(DROP_X)  # 4 layers + linear, 2 panels
    (legend,) = figure.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0] == "linear" and len(texts) == 5
    r2 = r2[(r2["task_key"] == key) & (r2["layer"] == 3)].set_index("variant")["value"]
    assert texts[4] == f"layer 3: {r2['count']:.3f} / {r2['sum']:.3f}"


def _many_layers(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spatial-drop curves of ``n`` layers that fill the panels: from far above the linear
    line (a deep layer) to far below it."""
    x = np.array(DROP_X) / 100
    rows = [dict(name=name, layer=layer, x=100 * xi, value=1 - xi ** (4 ** (1 - 2 * layer / n)))
            for name in ("count_ratio", "sum_ratio") for layer in range(n) for xi in x]
    r2 = [dict(layer=layer, variant=v, value=0.99) for layer in range(n) for v in ("count", "sum")]
    return pd.DataFrame(rows), pd.DataFrame(r2)


def _falling_points(n_models: int) -> pd.DataFrame:
    """High-pass curves of ``n_models`` models that fall from 100% to near 0 as the radius
    grows, spread over the whole panel (the case where a legend in a corner covered them)."""
    rows = []
    for i in range(n_models):
        for r in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0):
            keep = 1 / (1 + (r / 2 ** (i % 6)) ** 2)
            for name, scale in (("top1", 80.0), ("top5", 95.0)):
                value = scale * keep
                rows += [dict(label=f"model {i}", name=name, x=r, value=value,
                              ci_low=value - 3, ci_high=value + 3),
                         dict(label=f"model {i}", name=f"{name}_norm", x=r, value=100 * keep,
                              ci_low=100 * keep - 4, ci_high=100 * keep + 4)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_layers", [12, 40])
def test_spatial_drop_legend_clear_of_curves_that_fill_the_panels(n_layers):
    curves, r2 = _many_layers(n_layers)
    figure = spatial_drop_figure(curves, r2, f"a {n_layers}-block model")
    # every line (the layers' and the linear one) of both panels: 10 segments, 25 points each
    assert assert_legends_clear(figure) == 2 * (n_layers + 1) * (len(DROP_X) - 1) * 25
    (legend,) = figure.legends
    # a legend taller than the panels gets columns
    assert (legend._ncols > 1) == (n_layers == 40)
    assert legend.get_window_extent().height <= figure.axes[0].get_window_extent().height


@pytest.mark.parametrize("n_models", [3, 12])
def test_highpass_legend_clear_of_curves_that_fill_the_panels(n_models):
    points = _falling_points(n_models)
    styles = line_styles((f"model {i}", "ViT" if i % 2 else "CNN") for i in range(n_models))
    figure = filter_curves_figure(points, "highpass", styles)
    assert_legends_clear(figure)


def test_side_legend_keeps_the_axes_size_and_skips_an_empty_legend(tmp_path: Path):
    figure = new_figure(6, 3)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1])
    assert side_legend(figure, [ax]) is None and figure.get_figwidth() == 6
    ax.plot([0, 1], [1, 0], label="a rather long model name")
    before = ax.get_position().width * figure.get_figwidth()
    assert side_legend(figure, [ax]) is not None
    assert figure.get_figwidth() > 6
    assert ax.get_position().width * figure.get_figwidth() == pytest.approx(before)
    assert_legends_clear(figure)


def test_isolation_legend_clear_of_curves_and_natural_lines():
    """Figure 6's curves (CLS isolated at each insertion layer) of several models falling to
    the bottom-left corner, where the legend used to sit, with their dotted natural lines."""
    rows, natural = [], []
    for i in range(4):
        label = f"model {i}"
        natural += [dict(label=label, name=n, value=80.0 - 5 * i) for n in ("top1", "top5")]
        for layer in range(12):
            for name in ("top1", "top5"):
                value = (80.0 - 5 * i) * layer / 11
                rows.append(dict(label=label, name=name, x=layer, value=value,
                                 ci_low=value - 2, ci_high=value + 2))
    styles = line_styles((f"model {i}", "ViT") for i in range(4))
    figure = isolation_curve_figure(pd.DataFrame(rows), pd.DataFrame(natural), styles)
    assert assert_legends_clear(figure) >= 2 * 4 * 11 * 25
