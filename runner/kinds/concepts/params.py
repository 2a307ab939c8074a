"""Params of ``concepts``: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.kinds.sites import FeatureList, SiteParams


class ConceptsParams(SiteParams):
    """Which features to read, how many top images make a feature's set, how many random sets
    make the baseline."""

    features: FeatureList = Field(
        "all", description="`all`, a list of indices, or a range {start, stop, step}")
    k: int = Field(10, ge=2, le=1000, description="top images per feature whose classes are "
                   "compared (purity, distinct classes, spread, label)")
    score: Literal["mean", "max"] = Field(
        "mean", description="rank images by the mean (paper) or the max over patch tokens")
    draws: int = Field(1000, ge=10, le=100_000, description="random k-image sets of the "
                       "dataset (drawn with the task's seed) that make the baseline")
