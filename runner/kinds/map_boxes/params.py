"""Params of ``map_boxes``: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.kinds.sites import FeatureList, SiteParams


class MapBoxesParams(SiteParams):
    """Which features of which sites to measure, and on how many of their top images."""

    features: FeatureList = Field(
        "all", description="`all`, a list of indices, or a range {start, stop, step}")
    k: int = Field(5, ge=1, description="most activating images (among those with boxes) "
                   "measured per feature")
    score: Literal["mean", "max"] = Field(
        "mean", description="rank images by the mean (paper) or the max over patch tokens")
