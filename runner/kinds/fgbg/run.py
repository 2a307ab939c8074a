"""The foreground/background study's evaluation: box-masked inputs as variants of the fused
pass, and the accuracy on each of the images that have boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from runner.data.base import Batch
from runner.kinds.base import TaskContext
from runner.kinds.evaluation import AccuracyEvaluator
from runner.kinds.fgbg.params import FILLS, FgbgParams
from runner.kinds.fusion import NATURAL, BatchInputs, Derived, Variant
from runner.models.readouts import LOGITS, Readout
from runner.ops.masking import REGIONS, masked_band


@dataclass(frozen=True)
class Masked(Variant):
    """The foreground-only (``fg``: only box pixels kept) or background-only (``bg``: box pixels
    blanked) input, the rest filled with ``black`` or the model's normalization ``mean``.
    Masked at native resolution, then resized (only the rows that meet a box are resampled
    again); it covers only the batch's images with boxes."""

    stage: ClassVar[int] = 1
    name: str
    fill: str = "black"

    def __post_init__(self) -> None:
        if self.name not in REGIONS or self.fill not in FILLS:
            raise ValueError(f"a masked variant is one of {REGIONS} with a fill in {FILLS}, "
                             f"not {self.name!r} with {self.fill!r}")

    def derive(self, inputs: BatchInputs) -> Derived:
        rows = [i for i, boxes in enumerate(inputs.boxes) if boxes]
        if not rows:
            return Derived(rows=[], x=None)
        if self.fill == "mean":
            fill = torch.tensor(inputs.preprocess.mean, device=inputs.device)
        else:
            fill = torch.zeros(3, device=inputs.device)
        edits = [(i, masked_band(inputs.native[i], inputs.boxes[i], self.name, fill))
                 for i in rows]
        return Derived(rows, inputs.resized_edits(edits))


class FgbgEvaluator(AccuracyEvaluator):
    """Accuracy on full, foreground-only and background-only inputs of the images with boxes."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        params: FgbgParams = ctx.params  # type: ignore[assignment]
        self.variants: dict[Variant, str] = {
            NATURAL: "full", Masked("fg", params.fill): "fg", Masked("bg", params.fill): "bg"}

    def requests(self) -> dict[Variant, set[Readout]]:
        return {variant: {LOGITS} for variant in self.variants}

    def update(self, variant: Variant, readouts: dict[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record(self.variants[variant], readouts[LOGITS], labels, indices)

    def batch_done(self, batch: Batch) -> None:
        super().batch_done(batch)
        without = sum(1 for boxes in batch.boxes if not boxes)
        if without:
            self.ctx.count("no_boxes", without)

    def finish(self) -> None:
        ctx = self.ctx
        if not self.recorded("fg"):
            raise ValueError(f"no image of dataset {ctx.dataset_name!r} has a bounding box of "
                             "its class; fgbg needs boxes (the `boxes:` folder)")
        index = self.hits("fg")[0]
        full_index, full1, full5 = self.hits("full")
        keep = np.isin(full_index, index)  # the full image only where the image has boxes
        correct = {("full", None): (full1[keep], full5[keep])}
        top5_full = self.report_accuracy(full1[keep], full5[keep], variant="full")[1]
        for name in ("fg", "bg"):
            _, top1, top5 = self.hits(name)
            correct[(name, None)] = (top1, top5)
            top5_masked = self.report_accuracy(top1, top5, variant=name)[1]
            self.report_normalized("top5_norm", top5_masked, top5_full, variant=name)
        ctx.metric("n_images", len(index))
        self.store_correct(index, correct)
        bad_box_files = ctx.dataset.info.get("bad_box_files", 0)
        if bad_box_files:  # unreadable box files: their images were evaluated as without boxes
            ctx.count("bad_box_files", bad_box_files)


def evaluator(ctx: TaskContext) -> FgbgEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return FgbgEvaluator(ctx)
