"""Params of the contrast sweep: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from pydantic import Field, field_validator

from runner.kinds.base import KindParams

DEFAULT_FACTORS = (1.0, 0.5, 0.25, 0.1)


class ContrastParams(KindParams):
    """Parameters of the contrast sweep."""

    factors: tuple[float, ...] = Field(
        DEFAULT_FACTORS,
        description="contrast factors c in [0, 1]: each image becomes m + c * (x - m), m its mean "
        "over channels and pixels (c = 1: the natural input, c = 0: a flat grey image); sorted "
        "from high to low and deduplicated",
    )
    normalize: bool = Field(
        True, description="also report top1_norm/top5_norm = 100 * accuracy at c / natural accuracy"
    )

    @field_validator("factors")
    @classmethod
    def _sorted_factors(cls, factors: tuple[float, ...]) -> tuple[float, ...]:
        if not factors:
            raise ValueError("give at least one contrast factor")
        if min(factors) < 0 or max(factors) > 1:
            raise ValueError("contrast factors must be in [0, 1]")
        return tuple(sorted({float(c) for c in factors}, reverse=True))
