"""Accuracy bookkeeping shared by the evaluation kinds: per-image top-1/top-5 hits by variant,
the accuracy metrics, their ratio to a reference, and the ``correct`` artifact."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from runner.kinds.fusion import Variant
from runner.ops.metrics import topk_correct
from runner.results.correctness import Correctness, HitsKey

if TYPE_CHECKING:
    from runner.data.base import Batch
    from runner.kinds.base import TaskContext




class AccuracyEvaluator:
    """Shared bookkeeping of evaluators that measure accuracy: per-image top-1/top-5 hits,
    recorded under a variant name and its ``x``.

    Subclasses call ``record`` from ``update`` and read ``hits`` in ``finish``. Hits stay
    per image (and per position for patch logits) so that the ``correct`` artifact lets
    confidence intervals be computed later without a rerun.
    """

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.key = ctx.key
        self._hits: dict[tuple[str, float | None], list[tuple[Any, Any, Any]]] = {}
        self._undefined_logged: set[str] = set()

    def record(self, variant: str, logits: torch.Tensor, labels: torch.Tensor,
               indices: torch.Tensor, x: float | None = None) -> None:
        """Store which images have their label in the top 1 / top 5 of ``logits`` (B, ..., C)."""
        hits = topk_correct(logits, labels, (1, 5))
        self._hits.setdefault((variant, x), []).append(
            (indices.cpu().numpy(), hits[1].cpu().numpy(), hits[5].cpu().numpy()))

    def recorded(self, variant: str, x: float | None = None) -> bool:
        """Whether any image was recorded under ``variant`` at ``x``."""
        return bool(self._hits.get((variant, x)))

    def hits(self, variant: str, x: float | None = None) -> tuple[Any, Any, Any]:
        """(dataset indices, top-1 hits, top-5 hits) of every image recorded under ``variant``."""
        parts = self._hits.get((variant, x))
        if not parts:
            shown = variant if x is None else f"{variant} at {x:g}"
            raise ValueError(f"task {self.ctx.kind!r}: no image was evaluated ({shown})")
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def report_accuracy(self, top1: Any, top5: Any, **dims: Any) -> tuple[float, float]:
        """Record top1/top5 (percent) of per-image hits; returns them."""
        accuracy = (100.0 * float(top1.mean()), 100.0 * float(top5.mean()))
        self.ctx.metric("top1", accuracy[0], **dims)
        self.ctx.metric("top5", accuracy[1], **dims)
        return accuracy

    def report_normalized(self, name: str, value: float, reference: float, **dims: Any) -> None:
        """Record ``100 * value / reference``; left out (and logged) when the reference is 0."""
        if reference > 0:
            self.ctx.metric(name, 100.0 * value / reference, **dims)
            return
        self.ctx.count("normalization_undefined")
        if name not in self._undefined_logged:  # once per metric, not once per radius
            self._undefined_logged.add(name)
            self.ctx.log(f"{self.ctx.kind}: {name} left out, reference accuracy is 0 "
                         "(counted in the task's info as normalization_undefined)")

    def report_against_natural(self, variants: Iterable[Variant], *, normalize: bool) -> None:
        """Report a sweep: the natural accuracy, each variant's (with ``normalize``, also as
        ``top1_norm``/``top5_norm``, percent of the natural one), the image count and the
        ``correct`` artifact. Every variant must have been recorded under its name and ``x``."""
        index, top1, top5 = self.hits("natural")
        reference = self.report_accuracy(top1, top5, variant="natural")
        correct = {("natural", None): (top1, top5)}
        for variant in variants:
            _, top1, top5 = self.hits(variant.name, variant.x)
            correct[(variant.name, variant.x)] = (top1, top5)
            dims = {"variant": variant.name, "x": variant.x}
            accuracy = self.report_accuracy(top1, top5, **dims)
            if normalize:
                for name, value, ref in zip(("top1_norm", "top5_norm"), accuracy, reference,
                                            strict=True):
                    self.report_normalized(name, value, ref, **dims)
        self.ctx.metric("n_images", len(index))
        self.store_correct(index, correct)

    def store_correct(self, index: Any,
                      hits: Mapping[tuple[str, float | None], tuple[Any, Any]]) -> None:
        """Store the ``correct`` artifact: per-image top-1/top-5 hits by (variant, x)."""
        table = Correctness(np.asarray(index))
        for (variant, x), (top1, top5) in hits.items():
            table.hits[HitsKey(variant, 1, x)] = top1
            table.hits[HitsKey(variant, 5, x)] = top5
        self.ctx.artifact("correct", table.to_arrays())

    def batch_done(self, batch: Batch) -> None:
        """Count the batch's unreadable images with the task."""
        if batch.skipped:
            self.ctx.count("skipped", batch.skipped)
