"""The low-pass sweep's evaluation: filtered inputs as variants of the fused pass, and the
accuracy on each."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runner.kinds.base import TaskContext
from runner.kinds.evaluation import AccuracyEvaluator
from runner.kinds.fusion import NATURAL, BatchInputs, Derived, Variant
from runner.kinds.lowpass.params import LowpassParams
from runner.models.base import Preprocess
from runner.models.readouts import LOGITS, Readout
from runner.ops.frequency import apply_mask, filter_mask, is_identity, spectrum


@dataclass(frozen=True)
class Filtered(Variant):
    """The natural input filtered in its 2-D FFT: ``name`` is ``lowpass``/``highpass`` (ideal
    circular filter, ``x`` = radius in cycles per image) or ``gaussian``/``gaussian_highpass``
    (``x`` = sigma in cycles per image). The spectrum is computed once per batch and each
    transfer function once per pass."""

    name: str
    x: float

    def canonical(self, preprocess: Preprocess) -> Variant:
        size = preprocess.size
        return NATURAL if is_identity(self.name, self.x, size, size) else self

    def derive(self, inputs: BatchInputs) -> Derived:
        natural = inputs.natural()
        spec = inputs.per_batch("spectrum", lambda: spectrum(natural))
        height, width = natural.shape[-2:]
        mask = inputs.per_pass(self, lambda: filter_mask(self.name, self.x, height, width,
                                                         natural.device))
        return Derived(None, apply_mask(spec, mask).to(natural.dtype))


class LowpassEvaluator(AccuracyEvaluator):
    """Accuracy on the natural input and on each filtered input of the sweep."""

    def __init__(self, ctx: TaskContext) -> None:
        super().__init__(ctx)
        params: LowpassParams = ctx.params  # type: ignore[assignment]
        self.normalize = params.normalize
        self.variants: list[Variant] = [NATURAL] + [
            Filtered(name, float(x)) for name in params.filter_names() for x in params.radii]

    def requests(self) -> dict[Variant, set[Readout]]:
        return {variant: {LOGITS} for variant in self.variants}

    def update(self, variant: Variant, readouts: dict[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        self.record(variant.name, readouts[LOGITS], labels, indices, x=variant.x)

    def finish(self) -> None:
        self.report_against_natural(self.variants[1:], normalize=self.normalize)


def evaluator(ctx: TaskContext) -> LowpassEvaluator:
    """What the kind's declaration calls: this task's share of the fused pass."""
    return LowpassEvaluator(ctx)
