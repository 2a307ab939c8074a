"""A feature's page: its optimized image per variant (the params that differ named), its most
activating images with their activation maps over them, its numbers (the optimized activation
beside the best natural one, the visualize checks, any other number a task stored for it), its
spatial-drop curves, prev/next in its layer and the same feature in the study's other models.
A failed optimization is flagged at the top of the page and on its image."""

from __future__ import annotations

import math
from html import escape

import numpy as np

from runner.atlas.images import Cell
from runner.atlas.inputs import AtlasData, DropCurve, FeatureData, FeatureId, Optimized
from runner.atlas.pages import VISUALIZE_NUMBERS, Layer, cell_html, number, page
from runner.present import atlas_links as links


def feature_page(atlas: AtlasData, lay: Layer, position: int,
                 layers: dict[tuple[str, str, int], Layer]) -> str:
    """The page of the ``position``-th feature of ``lay``."""
    feature = lay.features[position]
    fid = feature.id
    path = links.feature_page(fid.model, fid.site, fid.layer, fid.feature)
    body = [f"<h1>{escape(fid.model)} · {escape(lay.title)} · feature {fid.feature}</h1>",
            _neighbours(path, lay, position), _other_models(path, atlas, fid, layers)]
    failed = [o for o in feature.optimized if o.failed]
    if failed:
        body.append('<p class="alarm">Optimization failed: the optimized image does not '
                    "activate this feature (its activation stayed at or below zero, or far "
                    "below its top natural images) even after the retries"
                    + (f" ({_variants(failed)})" if len(feature.optimized) > 1 else "")
                    + ". Its image is shown as it ended.</p>")
    if feature.optimized:
        body.append(_optimized(path, feature))
    if feature.top:
        body.append(_top_images(path, feature))
    body.append(_numbers(feature))
    if feature.drops:
        body.append("<h2>Spatial drop</h2>" + "".join(_drop(d) for d in feature.drops))
    crumbs = [("atlas", links.INDEX), (fid.model, links.model_page(fid.model)),
              (lay.title, lay.path(lay.page_of(position))), (f"feature {fid.feature}", None)]
    return page(path, f"{fid.model} {lay.title} feature {fid.feature} · {atlas.study} atlas",
                crumbs, "\n".join(body))


def _variants(optimized: list[Optimized]) -> str:
    return "; ".join(o.variant or "the only variant" for o in optimized)


def _neighbours(path: str, lay: Layer, position: int) -> str:
    parts = []
    if position > 0:
        prev = lay.features[position - 1].id
        parts.append(f'<a rel="prev" href="{escape(_page_link(path, prev))}">« feature '
                     f"{prev.feature}</a>")
    grid = links.relative(path, lay.path(lay.page_of(position)))
    parts.append(f'<a href="{escape(grid)}">all of {escape(lay.title)}</a>')
    if position + 1 < len(lay.features):
        after = lay.features[position + 1].id
        parts.append(f'<a rel="next" href="{escape(_page_link(path, after))}">feature '
                     f"{after.feature} »</a>")
    return f'<p class="pager">{" · ".join(parts)}</p>'


def _page_link(path: str, fid: FeatureId) -> str:
    return links.relative(path, links.feature_page(fid.model, fid.site, fid.layer, fid.feature))


def _other_models(path: str, atlas: AtlasData, fid: FeatureId,
                  layers: dict[tuple[str, str, int], Layer]) -> str:
    """Links to this feature in the study's other models (or to their layer, when the feature
    has no page there)."""
    parts = []
    for model in atlas.models:
        other = FeatureId(model, fid.site, fid.layer, fid.feature)
        if model == fid.model:
            continue
        if other in atlas.features:
            parts.append(f'<a href="{escape(_page_link(path, other))}">{escape(model)}</a>')
        elif (model, fid.site, fid.layer) in layers:
            grid = links.relative(path, layers[(model, fid.site, fid.layer)].path(1))
            parts.append(f'<a href="{escape(grid)}">{escape(model)}</a> (layer only)')
    if not parts:
        return ""
    return f'<p class="sub">The same feature in: {", ".join(parts)}</p>'


def _optimized(path: str, feature: FeatureData) -> str:
    figures = []
    for i, o in enumerate(feature.optimized):
        caption = escape(o.variant) + "<br>" if o.variant else ""
        if "activation" in o.numbers:
            caption += f"activation {number(o.numbers['activation'])}"
        if o.failed:
            caption += ' <span class="badge">failed</span>'
        image = cell_html(path, feature, Cell("optimized", i), 128)
        figures.append(f'<figure class="{"failed" if o.failed else ""}">{image}'
                       f"<figcaption>{caption}</figcaption></figure>")
    varied = feature.varied
    differ = (f'<p class="sub">Variants differ in {escape(", ".join(varied))}.</p>'
              if varied else "")
    return f'<h2>Optimized image</h2>{differ}<div class="row">{"".join(figures)}</div>'


def _top_images(path: str, feature: FeatureData) -> str:
    out = ["<h2>Most activating images</h2>"]
    for s, top in enumerate(feature.top):
        figures = []
        for rank, (index, value) in enumerate(zip(top.indices.tolist(), top.values.tolist(),
                                                  strict=True)):
            if index < 0:
                continue
            image = cell_html(path, feature, Cell("image", s, rank), 96)
            over = cell_html(path, feature, Cell("overlay", s, rank), 96)
            figures.append(f"<figure>{image}{over}<figcaption>#{rank + 1} · {number(value)}"
                           f"<br>image {index}</figcaption></figure>")
        out.append(f'<h3>{escape(top.source)}</h3><p class="sub">Top: the image as the model '
                   "saw it; below: its activation map (patch grid, min to max) over it.</p>"
                   f'<div class="row">{"".join(figures)}</div>')
    return "".join(out)


def _numbers(feature: FeatureData) -> str:
    """The visualize numbers, a column per variant; then the rankings' and any other numbers of
    the feature, each with where it comes from."""
    out = []
    if feature.optimized:
        natural = _best_natural(feature)
        rows = []
        for name, label in (*VISUALIZE_NUMBERS, ("ratio", "optimized / best top image")):
            values = [_variant_number(o, name, natural) for o in feature.optimized]
            if any(v is not None for v in values):
                rows.append(f"<tr><td>{escape(label)}</td>" + "".join(
                    f'<td class="num">{escape(v or "–")}</td>' for v in values) + "</tr>")
        head = "".join(f"<th>{escape(o.variant or 'optimized image')}</th>"
                       for o in feature.optimized)
        out.append(f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}"
                   "</tbody></table>")
    rows = []
    for top in feature.top:
        kept = top.values[top.indices >= 0]
        if kept.size:
            rows.append((f"mean activation of its top {kept.size} images",
                         number(float(np.mean(kept))), top.source))
            rows.append(("best natural activation", number(float(kept[0])), top.source))
    rows += [(name, number(value), source) for name, source, value in feature.numbers]
    if rows:
        out.append("<table><thead><tr><th></th><th>value</th><th>from</th></tr></thead><tbody>"
                   + "".join(f'<tr><td>{escape(a)}</td><td class="num">{escape(b)}</td>'
                             f"<td>{escape(c)}</td></tr>" for a, b, c in rows)
                   + "</tbody></table>")
    return "<h2>Numbers</h2>" + "".join(out) if out else ""


def _variant_number(o: Optimized, name: str, natural: float) -> str | None:
    """A variant's number as shown, None when it has none. ``ratio``: its activation over the
    best top image's score, when the task did not store its own ``naturalness``."""
    if name != "ratio":
        return _shown(name, o.numbers[name]) if name in o.numbers else None
    if "naturalness" in o.numbers or "activation" not in o.numbers or not natural > 0:
        return None
    return number(o.numbers["activation"] / natural)


def _shown(name: str, value: float) -> str:
    if name == "optimization_failed":
        return "yes" if value >= 0.5 else "no"
    if name == "attempts":
        return str(int(value))
    return number(value)


def _best_natural(feature: FeatureData) -> float:
    """The feature's largest stored top-image score, NaN when it has none."""
    values = [float(t.values[t.indices >= 0].max()) for t in feature.top
              if (t.indices >= 0).any()]
    return max(values) if values else math.nan


#: The spatial-drop chart: size, margins, and a colour per curve.
_W, _H, _L, _B = 340, 190, 38, 26
_COLOURS = {"count_ratio": "#1f5fa8", "sum_ratio": "#c8641e"}


def _drop(curve: DropCurve) -> str:
    """Inline SVG of one task's spatial-drop curves: this feature's (solid) and its layer's
    mean (dashed), ratio against percent of active patches dropped; the legend sits below the
    chart, never over the data."""
    values = [v for vs in (*curve.curves.values(), *curve.layer_mean.values()) for v in vs
              if v == v]
    top = max([1.0, *values]) * 1.05

    def xy(x: float, y: float) -> str:
        return (f"{_L + x / 100 * (_W - _L - 8):.1f},"
                f"{_H - _B - y / top * (_H - _B - 8):.1f}")

    lines = []
    for dashed, group in ((False, curve.curves), (True, curve.layer_mean)):
        for name, ys in group.items():
            points = " ".join(xy(x, y) for x, y in zip(curve.x, ys, strict=True) if y == y)
            style = ' stroke-width="1.2" stroke-dasharray="4 3"' if dashed else ' stroke-width="2"'
            lines.append(f'<polyline fill="none" stroke="{_COLOURS.get(name, "#555")}"{style} '
                         f'points="{points}"/>')
    axes = (f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - 8}" y2="{_H - _B}" stroke="#999"/>'
            f'<line x1="{_L}" y1="8" x2="{_L}" y2="{_H - _B}" stroke="#999"/>'
            f'<text x="{_L}" y="{_H - 8}" class="t">0%</text>'
            f'<text x="{_W - 30}" y="{_H - 8}" class="t">100%</text>'
            f'<text x="4" y="14" class="t">{top:.2g}</text>'
            f'<text x="4" y="{_H - _B}" class="t">0</text>')
    legend = " ".join(f'<span style="color:{_COLOURS.get(n, "#555")}">■ {escape(n)}</span>'
                      for n in curve.curves)
    return (f'<figure><svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">'
            f'{axes}{"".join(lines)}</svg><figcaption>{legend} · dashed: the layer\'s mean · '
            f"x: share of active patches dropped · {escape(curve.source)}</figcaption></figure>")
