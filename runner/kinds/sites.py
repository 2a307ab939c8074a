"""Site and feature selection shared by the kinds that read one site kind in some blocks
(topk, visualize, spatial_drop): their params, and the plan-time checks against the model.
Light: pydantic and ``ModelInfo`` only, no torch, so planning stays fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.errors import PlanError
from runner.kinds.base import Kind, KindParams
from runner.models.sites import check_sites

if TYPE_CHECKING:
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
