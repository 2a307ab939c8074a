"""Site and feature selection shared by the kinds that read one site kind in some blocks
(topk, visualize, spatial_drop): their params, the plan-time checks against the model, and
the split of a big feature selection into chunk tasks (``chunk``). Light: pydantic and
``ModelInfo`` only, no torch, so planning stays fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from runner.errors import PlanError
from runner.kinds.base import Kind, KindParams, ModelShape
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

    def summary(self) -> str:
        """``0..63`` (``0..62 step 2``): the range as ``vitstudy plan`` shows it."""
        indices = self.indices()
        if not indices:
            return "empty"
        text = f"{indices[0]}..{indices[-1]}"
        return text if self.step == 1 else f"{text} step {self.step}"


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
CHUNK_DOC = ("features per task: a selection (`all`, a range or a list) with more features than "
             "this in a layer is planned as one task per layer and per run of this many "
             "features, each keyed by its own range (resumable, cached and spread over workers "
             "on its own); null: one task. Not part of any task key")


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


def chunk_field(default: int | None) -> Any:
    """The ``chunk`` param (``CHUNK_DOC``) with a kind's own default."""
    return Field(default, ge=1, description=CHUNK_DOC)


class SiteParams(KindParams):
    """Params shared by the kinds that read one site kind in some blocks."""

    layers: Layers = Field("all", description=LAYERS_DOC)
    site: SiteKind = Field("mlp", description=SITE_DOC)
    chunk: int | None = chunk_field(None)


def _selection_size(selection: FeatureSelection) -> int | None:
    """How many features an explicit selection names (None for `all` and `top`)."""
    if isinstance(selection, FeatureRange):
        return len(range(selection.start, selection.stop, selection.step))
    if isinstance(selection, list):
        return len(set(selection))
    return None


def feature_chunks(selection: FeatureSelection, features: list[int],
                   size: int) -> list[list[int] | FeatureRange]:
    """``features`` (a site's selected indices, sorted) cut into runs of ``size``: ranges for
    `all` and a range (the step kept), sub-lists for a list."""
    runs = [features[i : i + size] for i in range(0, len(features), size)]
    if isinstance(selection, list):
        return runs
    step = selection.step if isinstance(selection, FeatureRange) else 1
    return [FeatureRange(start=run[0], stop=run[-1] + 1, step=step) for run in runs]


def split_selection(params: SiteParams, model: Callable[[], ModelShape] | None
                    ) -> list[SiteParams]:
    """``params`` as chunk tasks: unchanged (one task) when ``chunk`` is null, the selection is
    `top`, or every layer's selection fits in one chunk; else one task per layer and run of
    ``chunk`` features, its ``layers`` that one block and its ``features`` the run. The
    model's sites are read only when a split may be needed (`all`, or a longer selection)."""
    size, selection = params.chunk, params.features  # type: ignore[attr-defined]
    if size is None or model is None or isinstance(selection, TopFeatures):
        return [params]
    listed = _selection_size(selection)
    if listed is not None and listed <= size:
        return [params]
    sites = resolve_sites(model(), params.layers, params.site)
    chosen = {s.layer: explicit_features(selection, s.n_features) for s in sites}
    if all(len(features) <= size for features in chosen.values()):
        return [params]
    base = params.model_dump()
    return [type(params).model_validate({**base, "layers": [layer], "features": part})
            for layer, features in chosen.items()
            for part in feature_chunks(selection, features, size)]


class SiteReadingKind(Kind):
    """A kind whose params are ``SiteParams`` with a ``features`` selection (topk, visualize,
    spatial_drop): the plan checks every requested site and feature against the model, and
    splits a big selection into chunk tasks (``split_selection``)."""

    plan_only = ("chunk",)

    def check(self, params: KindParams, model: ModelInfo | None) -> None:
        if model is not None:
            check_selection(model, params.layers, params.site, params.features)  # type: ignore[attr-defined]

    def split(self, params: KindParams, model: Callable[[], ModelShape] | None
              ) -> list[KindParams]:
        return list(split_selection(params, model))  # type: ignore[arg-type]
