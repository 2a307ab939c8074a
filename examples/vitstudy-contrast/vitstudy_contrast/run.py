"""The contrast sweep's evaluation: each contrast factor is a variant of the fused pass, derived
from the natural input; the accuracy on each is recorded with the factor as ``x``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from runner.kinds.base import TaskContext
from runner.kinds.evaluation import AccuracyEvaluator
from runner.kinds.fusion import NATURAL, BatchInputs, Derived, Variant
from runner.models.base import Preprocess
from runner.models.readouts import LOGITS, Readout
from vitstudy_contrast.params import ContrastParams


def scale_contrast(images: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, C, H, W) images with their contrast scaled by ``factor`` about each image's mean
    over channels and pixels: ``m + factor * (x - m)``."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return mean + factor * (images - mean)


@dataclass(frozen=True)
class Scaled(Variant):
    """The natural input with its contrast scaled by ``x`` (stage 2: derived from the natural
    input, which the pass has then already computed)."""

    x: float
    name: str = "contrast"

    def canonical(self, preprocess: Preprocess) -> Variant:
        # c = 1 is the natural input: it shares the natural forward, and its accuracy is the
        # natural accuracy exactly.
        return NATURAL if self.x == 1.0 else self

    def derive(self, inputs: BatchInputs) -> Derived:
        return Derived(None, scale_contrast(inputs.natural(), self.x))


class ContrastEvaluator(AccuracyEvaluator):
    """Accuracy on the natural input and at each contrast factor of the sweep."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        params: ContrastParams = ctx.params  # type: ignore[assignment]
        self.normalize = params.normalize
        self.scaled = [Scaled(c) for c in params.factors]

    def requests(self) -> dict[Variant, set[Readout]]:
        return {variant: {LOGITS} for variant in [NATURAL, *self.scaled]}

    def update(self, variant: Variant, readouts: Mapping[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record(variant.name, readouts[LOGITS], labels, indices, x=variant.x)

    def finish(self) -> None:
        self.report_against_natural(self.scaled, normalize=self.normalize)


def evaluator(ctx: TaskContext) -> ContrastEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return ContrastEvaluator(ctx)
