"""``topk``: one streaming pass over a dataset keeping, for every feature of the requested sites,
the k images that activate it most (mean over patch tokens, CLS excluded), with each kept
image's activation map on the patch grid. Also the ranking that ``visualize`` and
``spatial_drop`` reuse: site and feature selection, the ranking pass, top-image decoding."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.kinds.base import Kind, KindParams, PlanError, TaskContext

if TYPE_CHECKING:
    import torch

    from runner.data.base import Batch
    from runner.execute.fused import Variant
    from runner.models.base import ModelInfo, SiteInfo

SiteKind = Literal["mlp", "q", "k", "v", "out"]
Layers = list[int] | Literal["all"]


class FeatureRange(KindParams):
    """Features ``start``, ``start + step``, ... below ``stop`` (like Python's ``range``)."""

    start: int = Field(0, ge=0, description="first feature")
    stop: int = Field(1, ge=1, description="end (exclusive)")
    step: int = Field(1, ge=1, description="stride")

    def indices(self) -> list[int]:
        return list(range(self.start, self.stop, self.step))


class TopFeatures(KindParams):
    """A layer's most active features on the study's dataset: each feature is scored by the
    mean of its ``k`` best image scores (the ``topk`` ranking), and the ``top`` best are kept."""

    top: int = Field(8, ge=1, description="how many features per layer")
    by: Literal["topk-activation"] = Field(
        "topk-activation", description="the ranking: mean of the feature's top-k image scores")


FeatureList = list[int] | FeatureRange | Literal["all"]
FeatureSelection = list[int] | FeatureRange | TopFeatures | Literal["all"]

LAYERS_DOC = "block indices, 0-based (negative counts from the last block), or `all`"
SITE_DOC = ("which activation inside each block: `mlp` (the feed-forward GELU output, the "
            "paper's features), `q`, `k`, `v`, or `out` (the block's output tokens)")


def resolve_layers(layers: Layers, depth: int) -> list[int]:
    """Layer indices in [0, depth), negatives counted from the end; PlanError when out of range."""
    if layers == "all":
        return list(range(depth))
    out = []
    for layer in layers:
        if not -depth <= layer < depth:
            raise PlanError(f"layer {layer} is out of range: the model has {depth} blocks "
                            f"(layers 0..{depth - 1})")
        out.append(layer % depth)
    return sorted(set(out))


def resolve_sites(info: ModelInfo, layers: Layers, what: str) -> list[SiteInfo]:
    """The model's ``what`` site of each requested layer, in layer order (a CNN's stages stand
    in for block sites); PlanError naming what exists when one is missing."""
    from runner.models.sites import check_sites

    names = check_sites(info, resolve_layers(layers, info.depth), what)
    return [info.sites[name] for name in names]


def explicit_features(selection: FeatureSelection, n_features: int) -> list[int] | None:
    """The feature indices a selection names (None for ``top``); PlanError when out of range."""
    if isinstance(selection, TopFeatures):
        if selection.top > n_features:
            raise PlanError(f"top {selection.top} features asked, the site has {n_features}")
        return None
    features = list(range(n_features)) if selection == "all" else (
        selection.indices() if isinstance(selection, FeatureRange) else list(selection))
    bad = [f for f in features if not 0 <= f < n_features]
    if bad:
        raise PlanError(f"feature {bad[0]} is out of range: the site has {n_features} features "
                        f"(0..{n_features - 1})")
    if not features:
        raise PlanError("the feature selection is empty")
    return sorted(set(features))


def check_selection(info: ModelInfo, layers: Layers, what: str,
                    selection: FeatureSelection) -> None:
    """Plan-time check that every requested site and feature exists."""
    for site in resolve_sites(info, layers, what):
        explicit_features(selection, site.n_features)


# ------------------------------------------------------------------------------ ranking


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
        from runner.ops.activation import TopK

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

    def requests(self) -> Mapping[Variant, Collection[str]]:
        from runner.execute.fused import NATURAL, site

        return {NATURAL: [site(s.name) for s in self.sites]}

    def update(self, variant: Variant, readouts: Mapping[str, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        from runner.execute.fused import site as site_readout
        from runner.ops.activation import patch_score, patch_view

        for s in self.sites:
            patches = patch_view(readouts[site_readout(s.name)], s.prefix_tokens, s.tokens)
            if not self._all[s.layer]:
                if s.layer not in self._index:
                    import torch

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
    from runner.execute.fused import run_alone

    evaluator = RankingEvaluator(ctx.key, sites, features, k=k, score=score,
                                 keep_maps=keep_maps, device=ctx.device)
    run_alone(evaluator, ctx)
    return evaluator.rankings


def model_inputs(ctx: TaskContext, indices: Collection[int]) -> dict[int, torch.Tensor]:
    """Dataset images as the model sees them, (3, S, S) in [0, 1] on the CPU, by index;
    unreadable ones are left out and counted as ``skipped``."""
    from runner.ops.pixels import resize_and_crop, to_unit

    pre = ctx.model.preprocess
    out = {}
    for index in sorted({int(i) for i in indices if int(i) >= 0}):
        image = ctx.dataset.decode(index)
        if image is None:
            ctx.count("skipped")
            continue
        out[index] = resize_and_crop(to_unit(image), pre.size, pre.crop_pct, pre.interpolation)
    return out


# --------------------------------------------------------------------------------- kind


class SiteParams(KindParams):
    """Params shared by the kinds that read one site kind in some blocks."""

    layers: Layers = Field("all", description=LAYERS_DOC)
    site: SiteKind = Field("mlp", description=SITE_DOC)


class SiteReadingKind(Kind):
    """A kind whose params are ``SiteParams`` with a ``features`` selection (topk, visualize,
    spatial_drop): the plan checks every requested site and feature against the model."""

    def check(self, params: KindParams, model: ModelInfo | None) -> None:
        if model is not None:
            check_selection(model, params.layers, params.site, params.features)  # type: ignore[attr-defined]


class TopKParams(SiteParams):
    features: FeatureList = Field(
        "all", description="`all`, a list of indices, or a range {start, stop, step}")
    k: int = Field(5, ge=1, description="images kept per feature")
    score: Literal["mean", "max"] = Field(
        "mean", description="rank images by the mean (paper) or the max over patch tokens")
    maps: bool = Field(True, description="keep each kept image's activation map (in the "
                       "per-layer `topk` npz, as `maps`)")
    render: int = Field(
        16, ge=0, description="per layer, write `activation_map` (.npy) and `overlay` (.png) "
        "artifacts for the first this many selected features (needs `maps`)")


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
    import numpy as np

    from runner.render import overlay

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
        if r.maps is None or render == 0:
            continue
        shown = r.select(r.features[:render])
        images = model_inputs(ctx, shown.indices.flatten().tolist())
        for row, feature in enumerate(shown.features):
            for rank, index in enumerate(shown.indices[row].tolist()):
                amap = shown.maps[row, rank].numpy()
                common = {"layer": r.site.layer, "feature": feature, "rank": rank}
                ctx.artifact("activation_map", amap, **common)
                if index in images:
                    ctx.artifact("overlay", overlay(images[index], amap), **common)


class TopKKind(SiteReadingKind):
    name = "topk"
    version = 1
    Params = TopKParams
    fusable = True
    summary = ("most activating dataset images of every feature (patch-token mean), with their "
               "activation maps")

    def evaluator(self, ctx: TaskContext) -> TopKEvaluator:
        return TopKEvaluator(ctx)

    def run(self, ctx: TaskContext) -> None:
        from runner.execute.fused import run_alone

        run_alone(self.evaluator(ctx), ctx)


KIND = TopKKind()
