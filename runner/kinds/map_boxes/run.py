"""The ``map_boxes`` task's evaluation: the ranking pass over the images that have boxes (maps
kept), then each kept map measured against its image's boxes in the model's input frame."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from runner.data.base import Batch
from runner.kinds.base import TaskContext
from runner.kinds.fusion import Variant
from runner.kinds.map_boxes.params import MapBoxesParams
from runner.kinds.ranking import Ranking, RankingEvaluator
from runner.kinds.sites import explicit_features, resolve_sites
from runner.models.base import Preprocess
from runner.models.readouts import Readout
from runner.ops.box_mass import (
    area_share,
    cell_coverage,
    input_frame_boxes,
    peak_coverage,
    positive_share,
)

#: The per-feature measures, in the order the artifact and the metrics list them.
MEASURES = ("box_share", "pointing_hit", "chance")


@dataclass(frozen=True)
class Framed:
    """An image with boxes, as the pass saw it: its decoded size and its (clipped) boxes."""

    height: int
    width: int
    boxes: tuple[tuple[int, int, int, int], ...]


class MapBoxesEvaluator(RankingEvaluator):
    """Ranks only the images with boxes (the others are left out and counted), then measures
    the kept maps against the boxes."""

    def __init__(self, ctx: TaskContext) -> None:
        params: MapBoxesParams = ctx.params  # type: ignore[assignment]
        sites = resolve_sites(ctx.model.info, params.layers, params.site)
        features = {s.layer: explicit_features(params.features, s.n_features) for s in sites}
        super().__init__(ctx.key, sites, features, k=params.k, score=params.score,
                         keep_maps=True, device=ctx.device)
        self.ctx = ctx
        self.boxed = torch.tensor([bool(s.boxes) for s in ctx.dataset.samples], dtype=torch.bool)
        self.framed: dict[int, Framed] = {}

    def update(self, variant: Variant, readouts: Mapping[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        keep = self.boxed[indices]
        if not bool(keep.any()):
            return
        if not bool(keep.all()):  # rank among the images with boxes only
            rows = keep.nonzero().squeeze(1)
            readouts = {r: v.index_select(0, rows.to(v.device)) for r, v in readouts.items()}
            labels, indices = labels.index_select(0, rows.to(labels.device)), indices[rows]
        super().update(variant, readouts, labels, indices)

    def batch_done(self, batch: Batch) -> None:
        for index, image, boxes in zip(batch.indices.tolist(), batch.images, batch.boxes,
                                       strict=True):
            if boxes:
                self.framed[index] = Framed(int(image.shape[-2]), int(image.shape[-1]),
                                            tuple(boxes))
            else:
                self.ctx.count("no_boxes")

    def finish(self) -> None:
        ctx = self.ctx
        if not self.framed:
            raise ValueError(f"no image of dataset {ctx.dataset_name!r} has a bounding box of "
                             "its class; map_boxes needs boxes (the `boxes:` folder)")
        super().finish()
        ctx.metric("depth", ctx.model.info.depth)
        coverage = CoverageCache(self.framed, ctx.model.preprocess)
        for ranking in self.rankings.values():
            measured = measure_ranking(ranking, coverage)
            for name, n in measured.pop("counts").items():
                if n:
                    ctx.count(name, n)
            report_layer(ctx, ranking, measured)


class CoverageCache:
    """Each image's cell coverage by its boxes on a grid, computed once per (image, grid)."""

    def __init__(self, framed: Mapping[int, Framed], preprocess: Preprocess) -> None:
        self.framed, self.pre = framed, preprocess
        self.cache: dict[tuple[int, tuple[int, int]], torch.Tensor | None] = {}

    def get(self, index: int, grid: tuple[int, int]) -> torch.Tensor | None:
        """(gh, gw) coverage, or None for an image without boxes."""
        key = (index, tuple(grid))
        if key not in self.cache:
            image = self.framed.get(index)
            self.cache[key] = None if image is None else cell_coverage(
                input_frame_boxes(torch.tensor(image.boxes), image.height, image.width,
                                  self.pre.size, self.pre.crop_pct),
                self.pre.size, key[1])
        return self.cache[key]


def measure_ranking(ranking: Ranking, coverage: CoverageCache) -> dict:
    """(F, k) box share, pointing hit and chance of every kept image of every feature (NaN where
    not measured), and the counts of maps left out: boxes wholly cropped away, no positive
    activation."""
    assert ranking.maps is not None
    grid = tuple(ranking.maps.shape[-2:])
    cover = torch.zeros(ranking.maps.shape, dtype=torch.float64)
    known = torch.zeros(ranking.indices.shape, dtype=torch.bool)
    for pos, index in enumerate(ranking.indices.flatten().tolist()):
        found = coverage.get(index, grid) if index >= 0 else None
        if found is not None:
            row, rank = divmod(pos, ranking.indices.shape[1])
            cover[row, rank], known[row, rank] = found, True
    chance = area_share(cover)
    share = positive_share(ranking.maps, cover)
    visible = known & (chance > 0)
    valid = visible & ~share.isnan()
    nan = torch.tensor(torch.nan, dtype=torch.float64)
    out = {name: torch.where(valid, value, nan).numpy() for name, value in
           zip(MEASURES, (share, peak_coverage(ranking.maps, cover), chance), strict=True)}
    out["counts"] = {"maps_boxes_cropped_out": int((known & ~visible).sum()),
                     "maps_without_positive_mass": int((visible & ~valid).sum())}
    return out


def report_layer(ctx: TaskContext, ranking: Ranking, measured: Mapping[str, np.ndarray]) -> None:
    """Per feature: each measure's mean over its measured images and ``n_images``; per layer:
    ``<measure>_mean`` over the measured features and ``n_features``; and the per-image
    ``map_boxes`` npz."""
    layer = ranking.site.layer
    n_images = np.sum(~np.isnan(measured["box_share"]), axis=1)
    kept = n_images > 0
    means = {name: np.full(len(ranking.features), np.nan) for name in MEASURES}
    for name in MEASURES:
        means[name][kept] = np.nanmean(measured[name][kept], axis=1)
    for row, feature in enumerate(ranking.features):
        if kept[row]:
            for name in MEASURES:
                ctx.metric(name, means[name][row], layer=layer, feature=feature)
            ctx.metric("n_images", n_images[row], layer=layer, feature=feature)
    if kept.any():
        for name in MEASURES:
            ctx.metric(f"{name}_mean", float(np.mean(means[name][kept])), layer=layer)
    ctx.metric("n_features", int(kept.sum()), layer=layer)
    ctx.artifact("map_boxes", {"features": np.asarray(ranking.features, dtype=np.int64),
                               "indices": ranking.indices.numpy(),
                               **{name: measured[name].astype(np.float32) for name in MEASURES}},
                 layer=layer)


def evaluator(ctx: TaskContext) -> MapBoxesEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return MapBoxesEvaluator(ctx)
