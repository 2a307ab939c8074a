"""Last-layer token mixing (paper section 4, Table 1, Figure 6).

CLS isolation at insertion layer L: CLS runs alone through blocks [0, L), the patch tokens run
without it, then both run through [L, depth) and the head reads CLS. Patch heads: the head on
each patch token alone gives per-position accuracy ("Patch Average" = mean over positions,
"Patch Maximum" = best position, Figure 6 = the map); head(mean of patch tokens) is reported too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.errors import PlanError
from runner.kinds.base import Kind, KindParams
from runner.kinds.cls_isolation.params import ClsIsolationParams

if TYPE_CHECKING:
    from runner.models.base import ModelInfo


class ClsIsolation(Kind):
    """CLS isolation over insertion layers, and the head applied to single patch tokens."""

    name = "cls_isolation"
    version = 2  # 2: the `correct` artifact stores its dimensions as data
    Params = ClsIsolationParams
    fusable = True
    summary = ("accuracy with CLS isolated up to layer L, and of the head on single patch "
               "tokens (Table 1, Figure 6)")

    def check(self, params: KindParams, model: ModelInfo | None) -> None:
        if model is None:
            return
        if not model.has_cls_token:
            raise PlanError(f"cls_isolation needs a model with a CLS token; {model.name!r} has "
                            "none (a CNN, or a ViT pooling by average)")
        bad = [layer for layer in params.layers or () if layer > model.depth]
        if bad:
            raise PlanError(f"cls_isolation: layers {bad} are past {model.name!r}'s depth; "
                            f"insertion layers go from 0 to {model.depth}")


KIND = ClsIsolation()
