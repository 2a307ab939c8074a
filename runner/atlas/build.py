"""Build (or bring up to date) a study's atlas: read its rows once, render every page, then write
only the files whose inputs changed and delete the ones no feature needs any more
(``runner.atlas.manifest``). Nothing is recomputed from the models: the atlas shows what the
tasks stored, and decodes dataset images only to draw a changed feature's top images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from runner.atlas import pages
from runner.atlas.feature_page import feature_page
from runner.atlas.images import ImageSource, cells, draw_strip, strip_digest
from runner.atlas.inputs import AtlasData, FeatureData, read_atlas
from runner.atlas.manifest import AtlasFolder, Output, SyncResult, content_digest
from runner.present import atlas_links as links
from runner.results.study import StudyData

#: Features per grid page.
PER_PAGE = 256
#: Largest side of a strip's cell, in pixels (smaller optimized images keep their size).
CELL = 96


@dataclass(frozen=True)
class AtlasResult:
    """A built atlas: its front page, its features, and what the build wrote."""

    index: Path
    features: int
    sync: SyncResult


def build_atlas(study: str, task_keys: list[str] | None, engine: Engine | str,
                store_root: str | Path, out_dir: str | Path, *,
                images: ImageSource | None = None, per_page: int = PER_PAGE, cell: int = CELL,
                model_names: dict[str, str | None] | None = None,
                progress: Callable[[int, int], None] | None = None) -> AtlasResult:
    """Bring ``out_dir`` up to date with the study's features (``task_keys``: the planned
    tasks; None: every task recorded under ``study``). ``images`` decodes the datasets' top
    images (None: activation maps and stored overlays stand in); ``model_names`` (alias ->
    library name) orders the models as the report does; ``progress(done, total)`` follows the
    writing."""
    folder = AtlasFolder.claim(Path(out_dir), study)  # refused before anything is read
    names = {alias: name for alias, name in (model_names or {}).items() if name}
    atlas = read_atlas(StudyData.load(study, task_keys, engine, store_root, names))
    outputs = render_pages(atlas, per_page)
    for feature in atlas.features.values():
        fid = feature.id
        for part in cells(feature):
            path = links.feature_image(fid.model, fid.site, fid.layer, fid.feature,
                                       "" if part == "opt" else part)
            outputs[path] = Output(strip_digest(feature, part, cell),
                                   make=_drawer(feature, part, images, cell))
    result = folder.sync(outputs, progress)
    return AtlasResult(folder.root / links.INDEX, len(atlas.features), result)


def _drawer(feature: FeatureData, part: str, images: ImageSource | None, cell: int
            ) -> Callable[[], tuple[bytes, bool]]:
    return lambda: draw_strip(feature, part, images, cell)


def render_pages(atlas: AtlasData, per_page: int) -> dict[str, Output]:
    """Every page of the atlas (and its stylesheet and script), rendered."""
    layers = {key: pages.Layer(*key, features, per_page)
              for key, features in atlas.layers().items()}
    html: dict[str, str] = {links.INDEX: pages.index_page(atlas, layers)}
    for model in atlas.models:
        mine = [lay for key, lay in layers.items() if key[0] == model]
        if mine:
            html[links.model_page(model)] = pages.model_page(atlas, model, mine)
    for lay in layers.values():
        for n in range(1, lay.pages + 1):
            html[lay.path(n)] = pages.grid_page(atlas, lay, n)
        for position, feature in enumerate(lay.features):
            fid = feature.id
            html[links.feature_page(fid.model, fid.site, fid.layer, fid.feature)] = (
                feature_page(atlas, lay, position, layers))
    html[pages.CSS_FILE] = CSS
    html[pages.JS_FILE] = JS
    outputs = {}
    for path, text in html.items():
        content = text.encode("utf-8")
        outputs[path] = Output(content_digest(content), content=content)
    return outputs


CSS = """\
:root { --ink:#1d2330; --muted:#6b7280; --line:#e5e7eb; --soft:#f6f7f9; --accent:#1f5fa8;
        --bad:#b42318; --badbg:#fdecea; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 28px 48px; }
nav.crumbs { padding: 8px 28px; background: var(--soft); border-bottom: 1px solid var(--line);
             font-size: 13px; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
h1 { font-size: 22px; margin: 6px 0 4px; } h2 { font-size: 17px; margin: 26px 0 6px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
.sub, figcaption { color: var(--muted); font-size: 12.5px; }
.bad { color: var(--bad); font-weight: 600; }
.alarm { background: var(--badbg); border-left: 4px solid var(--bad); padding: 8px 12px;
         max-width: 900px; }
.badge { background: var(--bad); color: #fff; border-radius: 3px; padding: 0 4px;
         font-size: 11px; margin-left: 3px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; }
th { background: var(--soft); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pager { margin: 8px 0; } .pager a, .pager b { margin-right: 6px; }
.cell { display: inline-block; position: relative; overflow: hidden; background: #ddd;
        vertical-align: top; }
.cell img { position: absolute; top: 0; height: 100%; max-width: none; }
.c64 { width: 64px; height: 64px; } .c96 { width: 96px; height: 96px; }
.c128 { width: 128px; height: 128px; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
.tile { display: flex; flex-direction: column; align-items: center; width: 72px;
        padding: 3px; border: 2px solid transparent; border-radius: 4px; font-size: 11px; }
.tile.failed { border-color: var(--bad); background: var(--badbg); }
.tile .n { color: var(--muted); } .tile .badge { margin: 1px 0 0; }
.row { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 4px 0; } figure .cell { display: block; margin-bottom: 2px; }
figure.failed .cell { outline: 3px solid var(--bad); }
svg .t { font-size: 10px; fill: var(--muted); }
"""

JS = """\
// The atlas's one script: arrow keys follow prev/next links, and after load the page
// records how many of its images loaded (data-images-* on <body>, read by the tests).
document.addEventListener("keydown", function (e) {
  var rel = e.key === "ArrowLeft" ? "prev" : e.key === "ArrowRight" ? "next" : null;
  var link = rel && document.querySelector('a[rel="' + rel + '"]');
  if (link && !e.altKey && !e.ctrlKey && !e.metaKey) { window.location.href = link.href; }
});
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = function (i) { return i.complete && i.naturalWidth > 0; };
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-loaded", String(images.filter(ok).length));
  document.body.setAttribute("data-images-broken", images.filter(function (i) {
    return !ok(i); }).map(function (i) { return i.getAttribute("src"); }).join(" "));
});
"""
