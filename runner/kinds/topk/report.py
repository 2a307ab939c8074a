"""The top-k gallery section of the report (Figure 2's most activating images): per model and
layer, one image of a bounded number of features, each row a feature's most activating images
with their activation maps overlaid; the other ranked features' top values as a folded table;
each shown feature linked to its atlas page when an atlas was built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from runner.kinds.ranked_tasks import RankedTasks, ranked_tasks
from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.atlas_links import report_links
from runner.present.panels import GridCell, GridRow, image_grid
from runner.present.tables import Table, cell_frame, metric_cell
from runner.present.text import slug
from runner.render import map_image
from runner.results.study import StudyData

KIND = "topk"
#: Features shown per model and layer, and images shown per feature (a figure of real photos
#: is then about 250 KB: a 256-colour PNG).
MAX_FEATURES = 8
MAX_IMAGES = 6
#: Features per model and layer in the table of those not shown (the strongest by mean top-k).
TABLE_FEATURES = 16
_MAP_PIXELS = (112, 112)


def ranking_values(data: StudyData, ranking: RankedTasks) -> pd.DataFrame:
    """Every ``topk_value`` row of the ranking's tasks, one per (layer, feature, rank)."""
    rows = pd.concat([data.task_metrics(k, "topk_value") for k in ranking.keys])
    rows = rows.dropna(subset=["layer", "feature", "position"])
    return rows.drop_duplicates(["layer", "feature", "position"]).sort_values(
        ["layer", "feature", "position"])


Scores = dict[tuple[int, int], float]


def layer_scores(values: pd.DataFrame) -> Scores:
    """(feature, rank) -> the kept image's score, from one layer's ``topk_value`` rows."""
    keys = zip(values["feature"].astype(int).tolist(), values["position"].astype(int).tolist(),
               strict=True)
    return dict(zip(keys, values["value"].astype(float).tolist(), strict=True))


def _caption(scores: Scores, feature: int, rank: int) -> str:
    """``#rank value`` of one kept image (rank counted from 1), the value when stored."""
    value = scores.get((feature, rank))
    return f"#{rank + 1}" if value is None else f"#{rank + 1}  {value:.2f}"


def overlay_rows(data: StudyData, ranking: RankedTasks, layer: int, scores: Scores
                 ) -> dict[int, GridRow]:
    """A row per feature with stored ``overlay`` images at ``layer`` (the first
    ``MAX_FEATURES``), its first ``MAX_IMAGES`` images by rank; files missing from the store
    are left out."""
    files = pd.concat([data.files(k, "overlay") for k in ranking.keys])
    files = files[(files["layer"] == layer) & files["feature"].notna() & files["rank"].notna()]
    files = files.drop_duplicates(["feature", "rank"]).sort_values(["feature", "rank"])
    cells: dict[int, list[GridCell]] = {}
    for feature, rank, file in zip(files["feature"].astype(int), files["rank"].astype(int),
                                   files["file"], strict=True):
        if feature not in cells and len(cells) == MAX_FEATURES:
            break
        row = cells.setdefault(feature, [])
        if len(row) < MAX_IMAGES and Path(file).is_file():
            row.append(GridCell(Path(file), _caption(scores, feature, rank)))
    return {f: GridRow(f"feature {f}", tuple(row)) for f, row in cells.items() if row}


def map_rows(data: StudyData, ranking: RankedTasks, layer: int, scores: Scores
             ) -> dict[int, GridRow]:
    """Without overlays (``render: 0``): the first features' activation maps alone, from the
    layer's ``topk`` npz when it kept them (``maps``)."""
    for key in ranking.keys:
        files = data.files(key, "topk")
        for path in files.loc[files["layer"] == layer, "file"]:
            if not Path(path).is_file():
                continue
            with np.load(path, allow_pickle=False) as npz:
                if "maps" not in npz.files:
                    continue
                features, maps = npz["features"], npz["maps"][:MAX_FEATURES, :MAX_IMAGES]
            return {int(f): GridRow(f"feature {int(f)}", tuple(
                GridCell(map_image(m.astype(np.float32), _MAP_PIXELS),
                         _caption(scores, int(f), rank)) for rank, m in enumerate(fmaps)))
                for f, fmaps in zip(features, maps, strict=False)}
    return {}


def rest_cells(ranking: RankedTasks, layer: int, values: pd.DataFrame, shown: set[int]
               ) -> list[dict]:
    """Table cells of the ``TABLE_FEATURES`` strongest features not shown (by the mean of their
    top-k values): their best image's value and that mean."""
    rest = values[~values["feature"].isin(shown)]
    if rest.empty:
        return []
    grouped = rest.groupby("feature")["value"]
    means = grouped.mean().sort_values(ascending=False, kind="stable").head(TABLE_FEATURES)
    counts = grouped.size()
    chosen = rest[rest["feature"].isin(means.index)].drop_duplicates("feature")  # rank 0 first
    best = {int(row.feature): row for row in chosen.itertuples()}
    cells = []
    for feature, mean in means.items():
        row, where = best[int(feature)], f"layer {layer}, feature {int(feature)}"
        cells.append(metric_cell(row, ranking.label, where, "best image", None))
        cells.append(metric_cell(row._replace(value=float(mean)), ranking.label, where,
                                 f"mean of top {counts[feature]}", None))
    return cells


def _gallery(ctx: SectionContext, ranking: RankedTasks, layer: int, values: pd.DataFrame
             ) -> set[int]:
    """One layer's gallery image (and its atlas links); the features it shows."""
    scores = layer_scores(values)
    rows = overlay_rows(ctx.data, ranking, layer, scores)
    maps_only = not rows
    rows = rows or map_rows(ctx.data, ranking, layer, scores)
    if not rows:
        return set()
    what = ("activation maps of its most activating images (the images were not rendered: "
            "`render: 0`)" if maps_only else
            "its most activating images, best first, each with its activation map overlaid")
    gallery = image_grid(list(rows.values()), height=112)
    ctx.image(gallery.quantize(256, method=Image.Quantize.FASTOCTREE),  # PNG a quarter the size
              f"topk_{slug(f'{ranking.label} {layer}')}",
              f"{ranking.label}, {ranking.site} layer {layer}: each row a feature, {what}; "
              f"'#r v': rank r and the image's score v ({ranking.score} over patch tokens).")
    if ctx.atlas is not None:
        ctx.links(f"{ranking.label}, layer {layer} in the atlas:",
                  report_links(ctx.atlas, ranking.model, ranking.site, [(layer, f) for f in rows]))
    return set(rows)


def build(ctx: SectionContext) -> None:
    """Per ranking and layer a gallery image (or nothing where no image was kept), then the
    other features' top values as a (folded) table whose caption counts what was ranked."""
    done = ctx.done()
    if done is None:
        return
    cells, counts = [], []
    for ranking in ranked_tasks(ctx.data, done):
        values = ranking_values(ctx.data, ranking)
        if values.empty:
            ctx.note(f"{ranking.label}: no ranking values were stored.")
            continue
        shown_total = 0
        for layer, layer_values in values.groupby("layer", sort=True):
            shown = _gallery(ctx, ranking, int(layer), layer_values)
            shown_total += len(shown)
            cells += rest_cells(ranking, int(layer), layer_values, shown)
        ranked = len(values.drop_duplicates(["layer", "feature"]))
        counts.append(f"{ranking.label}: {ranked} features ranked, {shown_total} shown")
    if cells:
        ctx.table(Table(
            "topk_values", "Top-k values of the features not shown (table)", cell_frame(cells),
            caption=(f"Per layer, up to {TABLE_FEATURES} features not shown above, those with "
                     f"the highest mean of their top-k values ({'; '.join(counts)}); every "
                     "value is in the database (metric `topk_value`, `vitstudy results`)."),
            decimals=3), folded=True)


SECTION = ReportSection(
    id="topk",
    title="Most activating images (top-k)",
    intro=(
        "For each feature, the dataset images that activate it most (mean activation over "
        "patch tokens, CLS excluded), with the feature's patch-wise activation map over each "
        "(paper, Figure 2: the natural images beside each optimized one). The paper reads "
        "these maps as saliency: they highlight the object the feature responds to."),
    build=build,
    order=15,
)
