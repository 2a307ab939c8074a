"""The ``topk`` task's evaluation: the ranking pass, then its metrics and artifacts."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from runner.kinds.base import TaskContext
from runner.kinds.ranking import Ranking, RankingEvaluator, model_inputs
from runner.kinds.sites import explicit_features, resolve_sites
from runner.kinds.topk.params import TopKParams
from runner.render import overlay


class TopKEvaluator(RankingEvaluator):
    """The ``topk`` task's share of the fused pass: rank, then report."""

    def __init__(self, ctx: TaskContext) -> None:
        params: TopKParams = ctx.params  # type: ignore[assignment]
        sites = resolve_sites(ctx.model.info, params.layers, params.site)
        features = {s.layer: explicit_features(params.features, s.n_features) for s in sites}
        super().__init__(ctx.key, sites, features, k=params.k, score=params.score,
                         keep_maps=params.maps, device=ctx.device)
        self.ctx = ctx
        self.params = params

    def finish(self) -> None:
        super().finish()
        report_rankings(self.ctx, self.rankings.values(), render=self.params.render)


def report_rankings(ctx: TaskContext, rankings: Collection[Ranking], *, render: int) -> None:
    """Write the topk metrics and artifacts (docs/results.md) for each site's ranking."""
    for r in rankings:
        layer = r.site.layer
        arrays = {"features": np.asarray(r.features, dtype=np.int64),
                  "indices": r.indices.numpy(), "values": r.values.numpy()}
        if r.maps is not None:
            arrays["maps"] = r.maps.numpy().astype(np.float16)
        ctx.artifact("topk", arrays, layer=layer)
        for row, feature in enumerate(r.features):
            for rank, value in enumerate(r.values[row].tolist()):
                ctx.metric("topk_value", value, layer=layer, feature=feature, position=rank)
    for r in rankings:
        if r.maps is not None and render > 0:
            render_ranking(ctx, r.select(r.features[:render]))


def render_ranking(ctx: TaskContext, shown: Ranking) -> None:
    """An ``activation_map`` (and, for a readable image, an ``overlay``) per kept image of each
    feature of ``shown``."""
    images = model_inputs(ctx, shown.indices.flatten().tolist())
    for row, feature in enumerate(shown.features):
        for rank, index in enumerate(shown.indices[row].tolist()):
            amap = shown.maps[row, rank].numpy()
            common = {"layer": shown.site.layer, "feature": feature, "rank": rank}
            ctx.artifact("activation_map", amap, **common)
            if index in images:
                ctx.artifact("overlay", overlay(images[index], amap), **common)


def evaluator(ctx: TaskContext) -> TopKEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return TopKEvaluator(ctx)
