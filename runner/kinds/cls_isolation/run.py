"""The CLS-isolation study's evaluation: isolated-CLS logits and patch heads read from the
natural input's forward, and the accuracy of each (per position for the patch heads)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from runner.kinds.base import TaskContext
from runner.kinds.cls_isolation.params import ClsIsolationParams, insertion_layers, patch_grid
from runner.kinds.evaluation import AccuracyEvaluator
from runner.kinds.fusion import NATURAL, Variant
from runner.models.readouts import (
    LOGITS,
    MEAN_TOKEN_LOGITS,
    TOKEN_LOGITS,
    IsolatedLogits,
    Readout,
)
from runner.render import heatmap_image

#: (variant, x) -> (top-1 hits, top-5 hits), as ``AccuracyEvaluator.store_correct`` takes them
Hits = dict[tuple[str, float | None], tuple[Any, Any]]


class ClsIsolationEvaluator(AccuracyEvaluator):
    """Natural, CLS-isolated and patch-head accuracies from the natural input's tokens."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        params: ClsIsolationParams = ctx.params  # type: ignore[assignment]
        model = ctx.model
        if model.vit is None or model.vit.cls_index is None:
            raise ValueError(f"cls_isolation needs a plain ViT with a CLS token; "
                             f"model {model.info.name!r} has none")
        self.info = model.info
        self.depth = model.vit.depth
        self.layers = insertion_layers(params, self.depth)
        self.patch_heads = params.patch_heads

    def requests(self) -> dict[Variant, set[Readout]]:
        readouts: set[Readout] = {LOGITS, *(IsolatedLogits(layer) for layer in self.layers)}
        if self.patch_heads:
            readouts |= {TOKEN_LOGITS, MEAN_TOKEN_LOGITS}
        return {NATURAL: readouts}

    def update(self, variant: Variant, readouts: dict[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record("natural", readouts[LOGITS], labels, indices)
        for layer in self.layers:
            self.record("isolated", readouts[IsolatedLogits(layer)], labels, indices,
                        x=float(layer))
        if self.patch_heads:
            self.record("patch", readouts[TOKEN_LOGITS], labels, indices)
            self.record("patch_mean_token", readouts[MEAN_TOKEN_LOGITS], labels, indices)

    def finish(self) -> None:
        index, top1, top5 = self.hits("natural")
        self.report_accuracy(top1, top5, variant="natural")
        correct: Hits = {("natural", None): (top1, top5)}
        for layer in self.layers:
            _, top1, top5 = self.hits("isolated", float(layer))
            self.report_accuracy(top1, top5, variant="isolated", x=float(layer))
            correct[("isolated", float(layer))] = (top1, top5)
        if self.patch_heads:
            correct.update(self._report_patches())
        self.ctx.metric("n_images", len(index))
        self.store_correct(index, correct)
        # the report's Table 1 reads L = depth - 1, whatever layers were measured
        self.ctx.result.info["depth"] = self.depth

    def _report_patches(self) -> Hits:
        """Per-position, average, best-position and mean-token accuracies; map and heat map.
        Returns the hits to store: per image and position (n, positions) for ``patch``."""
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
        return {("patch", None): (top1, top5), ("patch_mean_token", None): (mean1, mean5)}


def evaluator(ctx: TaskContext) -> ClsIsolationEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return ClsIsolationEvaluator(ctx)
