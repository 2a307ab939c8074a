"""Last-layer token mixing (paper section 4, Table 1, Figure 6).

CLS isolation at insertion layer L: CLS runs alone through blocks [0, L), the patch tokens run
without it, then both run through [L, depth) and the head reads CLS. Patch heads: the head on
each patch token alone gives per-position accuracy ("Patch Average" = mean over positions,
"Patch Maximum" = best position, Figure 6 = the map); head(mean of patch tokens) is reported too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from runner.execute.fused import (
    LOGITS,
    MEAN_TOKEN_LOGITS,
    NATURAL,
    TOKEN_LOGITS,
    AccuracyEvaluator,
    isolated,
    run_alone,
)
from runner.kinds.base import Kind, KindParams, PlanError, TaskContext

if TYPE_CHECKING:
    import torch

    from runner.execute.fused import Variant
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


class ClsIsolationEvaluator(AccuracyEvaluator):
    """Natural, CLS-isolated and patch-head accuracies from the natural input's tokens."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        model = ctx.model
        if model.vit is None or model.vit.cls_index is None:
            raise ValueError(f"cls_isolation needs a plain ViT with a CLS token; "
                             f"model {model.info.name!r} has none")
        self.info = model.info
        self.depth = model.vit.depth
        self.layers = insertion_layers(ctx.params, self.depth)
        self.patch_heads = ctx.params.patch_heads

    def requests(self) -> dict[Variant, set[str]]:
        readouts = {LOGITS, *(isolated(layer) for layer in self.layers)}
        if self.patch_heads:
            readouts |= {TOKEN_LOGITS, MEAN_TOKEN_LOGITS}
        return {NATURAL: readouts}

    def update(self, variant: Variant, readouts: dict[str, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record("natural", readouts[LOGITS], labels, indices)
        for layer in self.layers:
            self.record(f"isolated_{layer}", readouts[isolated(layer)], labels, indices)
        if self.patch_heads:
            self.record("patch", readouts[TOKEN_LOGITS], labels, indices)
            self.record("patch_mean_token", readouts[MEAN_TOKEN_LOGITS], labels, indices)

    def finish(self) -> None:
        index, top1, top5 = self.hits("natural")
        self.report_accuracy(top1, top5, variant="natural")
        correct: dict[str, Any] = {"index": index, "natural_top1": top1, "natural_top5": top5}
        for layer in self.layers:
            _, top1, top5 = self.hits(f"isolated_{layer}")
            self.report_accuracy(top1, top5, variant="isolated", x=float(layer))
            correct[f"isolated_{layer}_top1"], correct[f"isolated_{layer}_top5"] = top1, top5
        if self.patch_heads:
            correct.update(self._report_patches())
        self.ctx.metric("n_images", len(index))
        self.ctx.artifact("correct", correct)
        # the report's Table 1 reads L = depth - 1, whatever layers were measured
        self.ctx.result.info["depth"] = self.depth

    def _report_patches(self) -> dict[str, Any]:
        """Per-position, average, best-position and mean-token accuracies; map and heat map."""
        import numpy as np

        from runner.render import heatmap_image

        ctx = self.ctx
        _, top1, top5 = self.hits("patch")  # (n_images, n_patches) each
        per_position = 100.0 * np.stack([top1.mean(axis=0), top5.mean(axis=0)])  # (2, N)
        for position in range(per_position.shape[1]):
            ctx.metric("top1", per_position[0, position], variant="patch", position=position)
            ctx.metric("top5", per_position[1, position], variant="patch", position=position)
        for variant, reduce in (("patch_average", np.mean), ("patch_maximum", np.max)):
            ctx.metric("top1", reduce(per_position[0]), variant=variant)
            ctx.metric("top5", reduce(per_position[1]), variant=variant)
        _, mean1, mean5 = self.hits("patch_mean_token")
        self.report_accuracy(mean1, mean5, variant="patch_mean_token")
        grid = patch_grid(self.info, per_position.shape[1])
        maps = per_position.reshape(2, *grid).astype(np.float32)
        ctx.artifact("patch_accuracy", maps)
        title = f"{ctx.model_name or self.info.name}: top-1 (%) of the head on each patch token"
        ctx.artifact("patch_heatmap", heatmap_image(maps[0], title))
        return {"patch_top1": top1, "patch_top5": top5,
                "patch_mean_token_top1": mean1, "patch_mean_token_top5": mean5}


class ClsIsolation(Kind):
    """CLS isolation over insertion layers, and the head applied to single patch tokens."""

    name = "cls_isolation"
    version = 1
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

    def evaluator(self, ctx: TaskContext) -> ClsIsolationEvaluator:
        return ClsIsolationEvaluator(ctx)

    def run(self, ctx: TaskContext) -> None:
        run_alone(self.evaluator(ctx), ctx)


KIND = ClsIsolation()
