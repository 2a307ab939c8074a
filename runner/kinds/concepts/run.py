"""The ``concepts`` task's evaluation: the ranking pass (scores only, no maps), then the
classes of each feature's k most activating images measured in WordNet (``measures``), beside
random k-image sets of the same dataset."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import torch

from runner.errors import DatasetError
from runner.kinds.base import TaskContext
from runner.kinds.concepts.measures import (
    MEASURES,
    RELATIVE,
    ClassSpace,
    random_sets,
    set_measures,
)
from runner.kinds.concepts.params import ConceptsParams
from runner.kinds.fusion import Variant
from runner.kinds.ranking import Ranking, RankingEvaluator
from runner.kinds.sites import explicit_features, resolve_sites
from runner.models.readouts import Readout


class ConceptsEvaluator(RankingEvaluator):
    """The ``concepts`` task's share of the fused pass: rank, remember every image's class,
    then measure and report."""

    def __init__(self, ctx: TaskContext) -> None:
        params: ConceptsParams = ctx.params  # type: ignore[assignment]
        dataset = ctx.dataset
        self.space = ClassSpace.of(dataset.name, dataset.classes)  # refuses before the pass
        self.class_names = list(dataset.classes)
        sites = resolve_sites(ctx.model.info, params.layers, params.site)
        features = {s.layer: explicit_features(params.features, s.n_features) for s in sites}
        super().__init__(ctx.key, sites, features, k=params.k, score=params.score,
                         keep_maps=False, device=ctx.device)
        self.ctx = ctx
        self.labels = np.full(len(dataset), -1, dtype=np.int64)  # -1: not read (unreadable)

    def update(self, variant: Variant, readouts: Mapping[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        super().update(variant, readouts, labels, indices)
        self.labels[indices.cpu().numpy()] = labels.cpu().numpy()

    def finish(self) -> None:
        super().finish()
        report_concepts(self.ctx, self.rankings.values(), self.space, self.labels,
                        self.class_names)


def report_concepts(ctx: TaskContext, rankings: Collection[Ranking], space: ClassSpace,
                    labels: np.ndarray, class_names: list[str]) -> None:
    """The metrics and per-layer ``concepts`` artifacts (docs/concepts.md) of each ranking;
    the baseline is drawn from the classes of the images the pass read (``labels`` >= 0)."""
    params: ConceptsParams = ctx.params  # type: ignore[assignment]
    seen = labels[labels >= 0]
    k = min(params.k, len(seen))
    if k < 2:
        raise DatasetError(f"dataset {ctx.dataset_name!r}: {len(seen)} readable image(s); "
                           "concepts compares the classes of at least 2 images per feature. "
                           "Expected a dataset with at least 2 readable images.")
    baseline = set_measures(random_sets(seen, k, params.draws, ctx.seed), space)
    for ranking in rankings:
        sets = labels[ranking.indices[:, :k].numpy()]
        report_layer(ctx, ranking, sets, space, baseline)
        ctx.artifact("concepts", layer_record(ranking, sets, space, baseline, class_names),
                     layer=ranking.site.layer)


def report_layer(ctx: TaskContext, ranking: Ranking, sets: np.ndarray, space: ClassSpace,
                 baseline: dict[str, np.ndarray]) -> None:
    """Per feature each measure and its ratio to the random mean; per layer the random sets'
    mean (``variant="random"``) and standard deviation (``<measure>_sd``)."""
    layer = ranking.site.layer
    values = set_measures(sets, space)
    means = {name: float(baseline[name].mean()) for name in MEASURES}
    for name in MEASURES:
        ctx.metric(name, means[name], variant="random", layer=layer)
        ctx.metric(f"{name}_sd", float(baseline[name].std()), variant="random", layer=layer)
    for row, feature in enumerate(ranking.features):
        for name in MEASURES:
            ctx.metric(name, values[name][row], layer=layer, feature=feature)
        for name in RELATIVE:
            if means[name] > 0:  # a one-class dataset has no spread to compare with
                ctx.metric(f"{name}_ratio", values[name][row] / means[name], layer=layer,
                           feature=feature)


def layer_record(ranking: Ranking, sets: np.ndarray, space: ClassSpace,
                 baseline: dict[str, np.ndarray], class_names: list[str]) -> dict[str, Any]:
    """The layer's ``concepts`` JSON: each feature's top-k classes (indices into ``classes``)
    and label (wnid, name, depth, share of the k images it covers), and the baseline."""
    covers = [space.label(row) for row in sets]
    return {
        "layer": ranking.site.layer, "site": ranking.site.name, "k": int(sets.shape[1]),
        "classes": class_names, "wnids": space.wnids,
        "features": [int(f) for f in ranking.features],
        "top_classes": sets.tolist(),
        "label": [c.synset.wnid for c in covers],
        "label_name": [c.synset.name for c in covers],
        "label_depth": [c.synset.depth for c in covers],
        "label_share": [c.share for c in covers],
        "baseline": {name: {"mean": float(baseline[name].mean()),
                            "sd": float(baseline[name].std())} for name in MEASURES},
        "draws": int(len(baseline["purity"])),
    }


def evaluator(ctx: TaskContext) -> ConceptsEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return ConceptsEvaluator(ctx)
