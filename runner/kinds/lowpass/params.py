"""Params of the low-pass sweep: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from runner.kinds.base import KindParams

DEFAULT_RADII = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 112.0)


class LowpassParams(KindParams):
    """Parameters of the frequency sweep."""

    radii: tuple[float, ...] = Field(
        DEFAULT_RADII,
        description="cut-off radii in cycles per image (ideal filter) or sigmas (gaussian), "
        "sorted and deduplicated; a low-pass radius at or past the spectrum's corner "
        "(size/sqrt(2): 158 at 224 px, 45 at 64 px) keeps every frequency, i.e. the natural input",
    )
    filter: Literal["ideal", "gaussian"] = Field(
        "ideal", description="ideal circular mask (radius <= r) or Gaussian exp(-f^2 / 2 sigma^2)"
    )
    highpass: bool = Field(
        False, description="also evaluate the high-pass counterpart (1 - mask) at every radius"
    )
    normalize: bool = Field(
        True, description="also report top1_norm/top5_norm = 100 * filtered / natural accuracy"
    )

    @field_validator("radii")
    @classmethod
    def _sorted_radii(cls, radii: tuple[float, ...]) -> tuple[float, ...]:
        if not radii:
            raise ValueError("give at least one radius")
        if min(radii) < 0:
            raise ValueError("radii must be >= 0")
        return tuple(sorted(set(float(r) for r in radii)))

    def filter_names(self) -> list[str]:
        """The filters the sweep evaluates: lowpass/gaussian, plus their high-pass forms."""
        low = "lowpass" if self.filter == "ideal" else "gaussian"
        if not self.highpass:
            return [low]
        return [low, "highpass" if self.filter == "ideal" else "gaussian_highpass"]
