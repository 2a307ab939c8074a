"""Params of ``spatial_drop``: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from pydantic import Field, field_validator

from runner.kinds.sites import FeatureSelection, SiteParams, TopFeatures


class SpatialDropParams(SiteParams):
    """Which features, how many of their top images, and the drop sweep."""

    features: FeatureSelection = Field(
        TopFeatures(top=8), description="per layer: a list of indices, a range {start, stop, "
        "step}, `all`, or {top: N, by: topk-activation} (the N most active on the dataset)")
    images: int = Field(5, ge=1, description="most activating images per feature")
    seeds: int = Field(3, ge=1, description="random drop orders per image")
    percents: list[float] = Field(
        [float(x) for x in range(0, 101, 10)], min_length=2,
        description="percentages of the active patches to black out")
    threshold: float = Field(0.5, description="a patch is active when its activation exceeds "
                             "this")

    @field_validator("percents")
    @classmethod
    def _in_range(cls, percents: list[float]) -> list[float]:
        if any(not 0 <= p <= 100 for p in percents):
            raise ValueError("percents must lie in [0, 100]")
        return percents
