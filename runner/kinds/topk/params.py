"""Params of ``topk``: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.kinds.sites import FeatureList, SiteParams


class TopKParams(SiteParams):
    """Which features of which sites to rank, how many images to keep, what to render."""

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
