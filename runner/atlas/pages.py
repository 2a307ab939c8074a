"""The atlas's HTML: the front page (models and their layers), a page per model, a layer's grid
of feature thumbnails (paged, lazy-loaded) and a page per feature. Pages are plain HTML with
relative links (they open from ``file://``), one shared stylesheet and one small script; their
text depends only on the data, never on the time of the build, so an unchanged page renders to
the same bytes and is not rewritten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from runner.atlas.images import Cell, cells, position
from runner.atlas.inputs import AtlasData, FeatureData, FeatureId
from runner.present import atlas_links as links

CSS_FILE = "atlas.css"
JS_FILE = "atlas.js"

#: Feature numbers shown in this order, each with how it is named on the page.
VISUALIZE_NUMBERS = (
    ("activation", "optimized activation"),
    ("natural_max", "best natural activation"),
    ("naturalness", "naturalness (optimized / best natural)"),
    ("kept_blur", "kept under a 1-px blur"),
    ("kept_shift", "kept under an 8-px shift"),
    ("kept_jpeg", "kept under JPEG q75"),
    ("attempts", "attempts"),
    ("optimization_failed", "optimization failed"),
)


@dataclass(frozen=True)
class Layer:
    """One layer's grid: its features and how they are paged."""

    model: str
    site: str
    layer: int
    features: list[FeatureData]
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.features) / self.per_page))

    def page_of(self, position: int) -> int:
        """The 1-based grid page of the feature at ``position`` in the layer."""
        return position // self.per_page + 1

    def path(self, page: int) -> str:
        return links.grid_page(self.model, self.site, self.layer, page)

    @property
    def title(self) -> str:
        return f"{self.site} layer {self.layer}"


def page(path: str, title: str, crumbs: Sequence[tuple[str, str | None]], body: str) -> str:
    """A whole page at ``path`` (relative to the atlas root): head, breadcrumbs, body."""
    root = links.relative(path, "x")[:-1] or "./"
    trail = " › ".join(f'<a href="{escape(links.relative(path, to))}">{escape(text)}</a>'
                       if to else escape(text) for text, to in crumbs)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>"
            f'<link rel="stylesheet" href="{root}{CSS_FILE}"></head>\n'
            f'<body><nav class="crumbs">{trail}</nav><main>\n{body}\n</main>'
            f'<script src="{root}{JS_FILE}"></script></body></html>\n')


def number(value: float) -> str:
    """A value as shown: four significant digits; NaN as a dash."""
    return "–" if value != value else f"{value:.4g}"


def cell_html(path: str, feature: FeatureData, cell: Cell, size: int, *,
              lazy: bool = False) -> str:
    """One cell of the feature's strips, ``size`` px square (its strip cropped by CSS)."""
    fid = feature.id
    part = "" if cell.part == "opt" else cell.part
    src = links.relative(path, links.feature_image(*_parts(fid), part))
    index = position(feature, cell)
    loading = ' loading="lazy"' if lazy else ""
    return (f'<span class="cell c{size}"><img src="{escape(src)}" alt=""{loading} '
            f'style="left:-{index * size}px"></span>')


def _parts(fid: FeatureId) -> tuple[str, str, int, int]:
    return fid.model, fid.site, fid.layer, fid.feature


# ------------------------------------------------------------------------ index and models

def index_page(atlas: AtlasData, layers: dict[tuple[str, str, int], Layer]) -> str:
    """The front page: every model with its layers."""
    n_failed = sum(f.failed for f in atlas.features.values())
    body = [f"<h1>{escape(atlas.study)}: feature atlas</h1>",
            f'<p class="sub">{len(atlas.features)} features of {len(atlas.models)} models'
            + (f' · <span class="bad">{n_failed} failed optimizations</span>' if n_failed else "")
            + ". Each layer's grid shows a thumbnail per feature (its optimized image, or its "
            "most activating image); a feature's page shows its optimized images, its most "
            "activating images with their activation maps, its numbers and its spatial-drop "
            "curve where measured.</p>"]
    for model in atlas.models:
        mine = [lay for key, lay in layers.items() if key[0] == model]
        if mine:
            body.append(f'<h2><a href="{escape(links.model_page(model))}">{escape(model)}</a></h2>')
            body.append(_layer_table(links.INDEX, mine))
    return page(links.INDEX, f"{atlas.study} atlas", [("atlas", None)], "\n".join(body))


def model_page(atlas: AtlasData, model: str, layers: list[Layer]) -> str:
    """A model's page: its layers."""
    path = links.model_page(model)
    body = f"<h1>{escape(model)}</h1>\n{_layer_table(path, layers)}"
    return page(path, f"{model} · {atlas.study} atlas", [("atlas", links.INDEX), (model, None)],
                body)


def _layer_table(path: str, layers: list[Layer]) -> str:
    rows = []
    for lay in layers:
        features = lay.features
        failed = sum(f.failed for f in features)
        counts = [len(features), sum(bool(f.optimized) for f in features),
                  sum(bool(f.top) for f in features), sum(bool(f.drops) for f in features)]
        rows.append(
            f'<tr><td><a href="{escape(links.relative(path, lay.path(1)))}">{escape(lay.title)}'
            "</a></td>" + "".join(f'<td class="num">{n}</td>' for n in counts)
            + f'<td class="num{" bad" if failed else ""}">{failed}</td></tr>')
    return ("<table><thead><tr><th>layer</th><th>features</th><th>optimized</th>"
            "<th>ranked</th><th>spatial drop</th><th>failed</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


# -------------------------------------------------------------------------------- grids

def grid_page(atlas: AtlasData, lay: Layer, number_: int) -> str:
    """Page ``number_`` of a layer's grid of thumbnails."""
    path = lay.path(number_)
    shown = lay.features[(number_ - 1) * lay.per_page: number_ * lay.per_page]
    tiles = "".join(_tile(path, f) for f in shown)
    failed = sum(f.failed for f in lay.features)
    pager = _pager(lay, number_)
    body = (f"<h1>{escape(lay.model)} · {escape(lay.title)}</h1>"
            f'<p class="sub">{len(lay.features)} features'
            + (f' · <span class="bad">{failed} failed optimizations</span> (red)' if failed else "")
            + f"</p>{pager}<div class=\"grid\">{tiles}</div>{pager}")
    crumbs = [("atlas", links.INDEX), (lay.model, links.model_page(lay.model)),
              (lay.title if lay.pages == 1 else f"{lay.title} · page {number_}", None)]
    return page(path, f"{lay.model} {lay.title} · {atlas.study} atlas", crumbs, body)


def _tile(path: str, feature: FeatureData) -> str:
    fid = feature.id
    href = links.relative(path, links.feature_page(*_parts(fid)))
    strips = cells(feature)
    first = next(iter(strips.values()), None)
    thumb = (cell_html(path, feature, first[0], 64, lazy=True) if first
             else '<span class="cell c64 empty"></span>')
    best = next((o.numbers["activation"] for o in feature.optimized
                 if "activation" in o.numbers), None)
    tip = f"feature {fid.feature}" + ("" if best is None else f" · activation {number(best)}")
    flag = ""
    if feature.failed:
        tip += " · optimization failed"
        flag = '<span class="badge">failed</span>'
    return (f'<a class="tile{" failed" if feature.failed else ""}" href="{escape(href)}" '
            f'title="{escape(tip)}">{thumb}<span class="n">{fid.feature}</span>{flag}</a>')


def _pager(lay: Layer, current: int) -> str:
    if lay.pages == 1:
        return ""
    path = lay.path(current)
    parts = []
    if current > 1:
        parts.append(f'<a rel="prev" href="{escape(links.relative(path, lay.path(current - 1)))}">'
                     "« previous</a>")
    for n in range(1, lay.pages + 1):
        parts.append(f"<b>{n}</b>" if n == current else
                     f'<a href="{escape(links.relative(path, lay.path(n)))}">{n}</a>')
    if current < lay.pages:
        parts.append(f'<a rel="next" href="{escape(links.relative(path, lay.path(current + 1)))}">'
                     "next »</a>")
    return f'<p class="pager">{" ".join(parts)}</p>'
