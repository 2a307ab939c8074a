"""Params of the foreground/background study: light (pydantic only), read at plan time."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from runner.kinds.base import KindParams

#: What replaces the masked-out pixels.
FILLS = ("black", "mean")


class FgbgParams(KindParams):
    """Parameters of the foreground/background study."""

    fill: Literal["black", "mean"] = Field(
        "black",
        description="what replaces the masked-out pixels: black (the paper) or the model's "
        "normalization mean (zero after normalization)",
    )
