"""Foreground / background reliance (paper section 5, Table 2).

Each image with boxes is evaluated three ways: as is (``full``), with only its box pixels kept
(``fg``) and with its box pixels blanked (``bg``). Masking happens at the image's own resolution,
before resize and crop. Table 2 reports top-5 on fg and bg divided by top-5 on full, x100.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from runner.execute.fused import LOGITS, NATURAL, AccuracyEvaluator, masked, run_alone
from runner.kinds.base import Kind, KindParams, TaskContext

if TYPE_CHECKING:
    import torch

    from runner.data.base import Batch
    from runner.execute.fused import Variant


class FgbgParams(KindParams):
    """Parameters of the foreground/background study."""

    fill: Literal["black", "mean"] = Field(
        "black",
        description="what replaces the masked-out pixels: black (the paper) or the model's "
        "normalization mean (zero after normalization)",
    )


class FgbgEvaluator(AccuracyEvaluator):
    """Accuracy on full, foreground-only and background-only inputs of the images with boxes."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        fill = ctx.params.fill
        self.variants: dict[Variant, str] = {
            NATURAL: "full", masked("fg", fill): "fg", masked("bg", fill): "bg"}

    def requests(self) -> dict[Variant, set[str]]:
        return {variant: {LOGITS} for variant in self.variants}

    def update(self, variant: Variant, readouts: dict[str, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record(self.variants[variant], readouts[LOGITS], labels, indices)

    def batch_done(self, batch: Batch) -> None:
        super().batch_done(batch)
        without = sum(1 for boxes in batch.boxes if not boxes)
        if without:
            self.ctx.count("no_boxes", without)

    def finish(self) -> None:
        import numpy as np

        ctx = self.ctx
        if "fg" not in self._hits:
            raise ValueError(f"no image of dataset {ctx.dataset_name!r} has a bounding box of "
                             "its class; fgbg needs boxes (the `boxes:` folder)")
        index = self.hits("fg")[0]
        full_index, full1, full5 = self.hits("full")
        keep = np.isin(full_index, index)  # the full image only where the image has boxes
        correct = {"index": index, "full_top1": full1[keep], "full_top5": full5[keep]}
        top5_full = self.report_accuracy(full1[keep], full5[keep], variant="full")[1]
        for name in ("fg", "bg"):
            _, top1, top5 = self.hits(name)
            correct[f"{name}_top1"], correct[f"{name}_top5"] = top1, top5
            top5_masked = self.report_accuracy(top1, top5, variant=name)[1]
            self.report_normalized("top5_norm", top5_masked, top5_full, variant=name)
        ctx.metric("n_images", len(index))
        ctx.artifact("correct", correct)
        bad_box_files = ctx.dataset.info.get("bad_box_files", 0)
        if bad_box_files:  # unreadable box files: their images were evaluated as without boxes
            ctx.count("bad_box_files", bad_box_files)


class Fgbg(Kind):
    """Foreground-only and background-only accuracy (Table 2)."""

    name = "fgbg"
    version = 1
    Params = FgbgParams
    fusable = True
    needs_boxes = True
    summary = "top-1/top-5 on full, foreground-only and background-only images (Table 2)"

    def evaluator(self, ctx: TaskContext) -> FgbgEvaluator:
        return FgbgEvaluator(ctx)

    def run(self, ctx: TaskContext) -> None:
        run_alone(self.evaluator(ctx), ctx)


KIND = Fgbg()
