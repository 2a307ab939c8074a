"""Params of the CLS-isolation study, and the light helpers its run and its report share
(which insertion layers a task measures, the patch grid): pydantic only, no torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from runner.kinds.base import KindParams

if TYPE_CHECKING:
    from runner.models.base import ModelInfo


class ClsIsolationParams(KindParams):
    """Parameters of the CLS-isolation and patch-head study."""

    layers: tuple[int, ...] | None = Field(
        None,
        description="insertion layers L, 0..depth (0 = the unmodified model, depth = CLS never "
        "sees the image); default every layer. Table 1's 'Isolating CLS' is L = depth - 1 "
        "(11 on ViT-B/16)",
    )
    patch_heads: bool = Field(
        True, description="also apply the head to every patch token on its own (Table 1's Patch "
        "Average / Patch Maximum, Figure 6) and to the mean of the patch tokens"
    )

    @field_validator("layers")
    @classmethod
    def _sorted_layers(cls, layers: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if layers is None:
            return None
        if not layers or min(layers) < 0:
            raise ValueError("give at least one layer, each >= 0 (or leave out for every layer)")
        return tuple(sorted(set(layers)))


def insertion_layers(params: ClsIsolationParams, depth: int) -> tuple[int, ...]:
    """The insertion layers a task evaluates: the given ones, or every layer 0..depth."""
    return params.layers if params.layers is not None else tuple(range(depth + 1))


def patch_grid(info: ModelInfo, n_patches: int) -> tuple[int, int]:
    """(rows, cols) of the patch tokens, from the model's token sites (else a square)."""
    for site in info.sites.values():
        if site.tokens and site.grid[0] * site.grid[1] == n_patches:
            return site.grid
    side = round(n_patches**0.5)
    return (side, side) if side * side == n_patches else (1, n_patches)
