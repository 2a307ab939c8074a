"""The ranking pass shared by topk, visualize and spatial_drop: one streaming pass over a
dataset keeping, for some features of each site, the k images that activate them most (with
their activation maps), and the decoding of those top images as the model sees them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from runner.kinds.base import TaskContext
from runner.kinds.fusion import NATURAL, Variant
from runner.models.base import SiteInfo
from runner.models.readouts import Activations, Readout
from runner.ops.activation import TopK, patch_score, patch_view
from runner.ops.pixels import resize_and_crop, to_unit

if TYPE_CHECKING:
    from runner.data.base import Batch


@dataclass
class Ranking:
    """The top images of some features of one site, best first."""

    site: SiteInfo
    features: list[int]  # (F,) feature ids
    values: torch.Tensor  # (F, k) scores
    indices: torch.Tensor  # (F, k) dataset indices
    maps: torch.Tensor | None  # (F, k, gh, gw) activations of the kept images

    def select(self, features: Sequence[int]) -> Ranking:
        """The same ranking restricted to ``features`` (which it must hold)."""
        rows = [self.features.index(f) for f in features]
        return Ranking(self.site, list(features), self.values[rows], self.indices[rows],
                       None if self.maps is None else self.maps[rows])

    def top_features(self, n: int) -> list[int]:
        """The ``n`` features whose top-k scores have the highest mean (TopFeatures' rule)."""
        order = self.values.mean(dim=1).argsort(descending=True)[:n]
        return [self.features[i] for i in order.tolist()]


class RankingEvaluator:
    """Streams the fused pass's natural batches into one ``TopK`` per site; ``finish`` leaves
    the result in ``self.rankings`` (layer -> Ranking)."""

    def __init__(self, key: str, sites: Sequence[SiteInfo], features: Mapping[int, list[int]],
                 *, k: int, score: str = "mean", keep_maps: bool = True,
                 device: str = "cpu") -> None:
        self.key = key
        self.sites = list(sites)
        self.features = dict(features)
        self.score = score
        self.keep_maps = keep_maps
        self._all = {s.layer: len(self.features[s.layer]) == s.n_features for s in self.sites}
        self._index: dict[int, Any] = {}
        self.top = {s.layer: TopK(len(self.features[s.layer]), k, keep_maps=keep_maps,
                                  device=device) for s in self.sites}
        self.rankings: dict[int, Ranking] = {}

    def requests(self) -> Mapping[Variant, Collection[Readout]]:
        return {NATURAL: [Activations(s.name) for s in self.sites]}

    def update(self, variant: Variant, readouts: Mapping[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        for s in self.sites:
            patches = patch_view(readouts[Activations(s.name)], s.prefix_tokens, s.tokens)
            if not self._all[s.layer]:
                if s.layer not in self._index:
                    self._index[s.layer] = torch.tensor(self.features[s.layer],
                                                        device=patches.device)
                patches = patches.index_select(2, self._index[s.layer])
            scores = patch_score(patches.float(), self.score)
            self.top[s.layer].update(indices, scores, patches if self.keep_maps else None)

    def batch_done(self, batch: Batch) -> None:
        """Nothing to count: unreadable images are counted by the loop."""

    def finish(self) -> None:
        for s in self.sites:
            values, indices, maps = self.top[s.layer].result()
            if maps is not None:
                maps = maps.reshape(*maps.shape[:2], *s.grid)
            self.rankings[s.layer] = Ranking(s, self.features[s.layer], values.cpu(),
                                             indices.cpu(), None if maps is None else maps.cpu())


def rank_dataset(ctx: TaskContext, sites: Sequence[SiteInfo], features: Mapping[int, list[int]],
                 *, k: int, score: str = "mean", keep_maps: bool = True) -> dict[int, Ranking]:
    """One pass over ``ctx.dataset`` ranking the given features of each site (layer -> Ranking)."""
    evaluator = RankingEvaluator(ctx.key, sites, features, k=k, score=score,
                                 keep_maps=keep_maps, device=ctx.device)
    ctx.evaluate(evaluator)
    return evaluator.rankings


def model_inputs(ctx: TaskContext, indices: Collection[int]) -> dict[int, torch.Tensor]:
    """Dataset images as the model sees them, (3, S, S) in [0, 1] on the CPU, by index;
    unreadable ones are left out and counted as ``skipped``."""
    pre = ctx.model.preprocess
    out = {}
    for index in sorted({int(i) for i in indices if int(i) >= 0}):
        image = ctx.dataset.decode(index)
        if image is None:
            ctx.count("skipped")
            continue
        out[index] = resize_and_crop(to_unit(image), pre.size, pre.crop_pct, pre.interpolation)
    return out
