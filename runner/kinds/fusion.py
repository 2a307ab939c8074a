"""What a kind declares to join the fused pass: inputs derived from a decoded batch
(variants) and the evaluator contract.

An evaluation kind declares what it needs from every batch as *variants* (model inputs, each
carrying its own derivation, an ``ops`` call) mapped to *readouts* (``runner.models.readouts``).
The executor's fused pass decodes each batch once, derives each distinct variant once, runs
each through the model once, and hands every evaluator the readouts it asked for. It knows no
variant and no kind by name: all it calls is ``Variant.derive`` and the ``Evaluator`` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import torch

from runner.models.base import Preprocess
from runner.models.readouts import Readout
from runner.ops.masking import BandEdit
from runner.ops.pixels import (
    CropGeometry,
    column_pass,
    crop_geometry,
    model_batch,
    row_pass,
    separable_resize,
)

if TYPE_CHECKING:
    from runner.data.base import Batch

T = TypeVar("T")


# ------------------------------------------------------------------------------- inputs


class BatchInputs:
    """One decoded batch as the variants see it: the native-resolution images in [0, 1] on the
    pass's device, their boxes, the model's preprocessing, and two memos: ``per_batch`` (the
    natural input's spectrum) and ``per_pass`` (a filter's transfer function, built once)."""

    def __init__(self, native: list[torch.Tensor], boxes: list[tuple], preprocess: Preprocess,
                 device: torch.device, pass_memo: dict[Hashable, Any]) -> None:
        self.native, self.boxes, self.preprocess, self.device = native, boxes, preprocess, device
        self._pass_memo = pass_memo
        self._batch_memo: dict[Hashable, Any] = {}

    def resized(self, images: list[torch.Tensor]) -> torch.Tensor:
        """(B, 3, S, S): images resized and centre-cropped as the model expects."""
        pre = self.preprocess
        return model_batch(images, pre.size, pre.crop_pct, pre.interpolation)

    def natural(self) -> torch.Tensor:
        """The unmodified model input of the whole batch, computed once. Where resizing is
        separable (the CPU) it goes through each image's row pass, kept for ``resized_edits``."""
        def compute() -> torch.Tensor:
            if not separable_resize(self.device):
                return self.resized(self.native)
            interpolation = self.preprocess.interpolation
            return torch.stack([column_pass(self.row_pass(i), self.geometry(i), interpolation)
                                for i in range(len(self.native))])

        return self.per_batch("natural", compute)

    def resized_edits(self, edits: list[tuple[int, BandEdit]]) -> torch.Tensor:
        """(len(edits), 3, S, S): each (index, edit) as the model input of native image
        ``index`` so edited, equal to ``resized`` of the edited images; where resizing is
        separable, only the edited band's rows are resampled again."""
        if not separable_resize(self.device):
            return self.resized([edit.apply(self.native[i]) for i, edit in edits])
        interpolation = self.preprocess.interpolation
        out = []
        for i, edit in edits:
            geometry = self.geometry(i)
            rows = edit.row_pass(self.row_pass(i), partial(
                row_pass, geometry=geometry, interpolation=interpolation))
            out.append(column_pass(rows, geometry, interpolation))
        return torch.stack(out)

    def row_pass(self, index: int) -> torch.Tensor:
        """Native image ``index`` with its rows resampled to the resized width, once a batch."""
        return self.per_batch(("row_pass", index), lambda: row_pass(
            self.native[index], self.geometry(index), self.preprocess.interpolation))

    def geometry(self, index: int) -> CropGeometry:
        """Where native image ``index`` is resized and cropped to the model's input."""
        height, width = self.native[index].shape[-2:]
        return crop_geometry(height, width, self.preprocess.size, self.preprocess.crop_pct)

    def per_batch(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per batch under ``key``."""
        if key not in self._batch_memo:
            self._batch_memo[key] = compute()
        return self._batch_memo[key]

    def per_pass(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per pass under ``key`` (kept across batches)."""
        if key not in self._pass_memo:
            self._pass_memo[key] = compute()
        return self._pass_memo[key]


@dataclass(frozen=True)
class Derived:
    """A variant's model input for one batch: ``rows`` of the batch it covers (None: all of
    them; empty: none, and then ``x`` is None)."""

    rows: list[int] | None
    x: torch.Tensor | None


class Variant:
    """A model input derived from a decoded batch. Subclasses are frozen dataclasses (equal
    variants of different tasks are derived once) naming their dimensions ``name`` and ``x``."""

    #: Derivation order within a batch: 0 the natural input, 1 inputs made at native
    #: resolution, 2 inputs made from the natural input (which is then already computed).
    stage: ClassVar[int] = 2
    name: str
    x: float | None = None

    def canonical(self, preprocess: Preprocess) -> Variant:
        """The variant whose input equals this one's for this model (a low-pass past the
        spectrum's corner is the natural input), so that both share one forward."""
        return self

    def derive(self, inputs: BatchInputs) -> Derived:
        """This variant's model input for one batch."""
        raise NotImplementedError


@dataclass(frozen=True)
class Natural(Variant):
    """The unmodified input."""

    stage: ClassVar[int] = 0
    name: str = "natural"

    def derive(self, inputs: BatchInputs) -> Derived:
        return Derived(None, inputs.natural())


NATURAL = Natural()


# ---------------------------------------------------------------------------- evaluator


class Evaluator(Protocol):
    """One task's share of the fused pass: what it needs from each batch, and what it does.

    The loop calls ``requests()`` once, then for every batch: ``update`` once per requested
    variant (with exactly the readouts asked for that variant; a variant covering no row of
    the batch is skipped), then ``batch_done(batch)``; after the last batch, ``finish()``,
    which reports metrics and artifacts through the task's ``TaskContext``. Everything runs
    under ``torch.inference_mode()``. An exception in any of these fails this task only.
    """

    #: The task's key; the pass reports errors by it.
    key: str

    def requests(self) -> Mapping[Variant, Collection[Readout]]:
        """The variants this task needs, each with the readouts it needs on that variant."""
        ...

    def update(self, variant: Variant, readouts: Mapping[Readout, torch.Tensor],
               labels: torch.Tensor, indices: torch.Tensor) -> None:
        """Consume one batch of one variant. Readouts and ``labels`` are on the pass's device,
        ``indices`` (dataset indices, int64) on the CPU; all align with the readouts' first
        axis (the variant's rows of the batch). Readouts are shared between evaluators: read
        them, do not modify them in place."""
        ...

    def batch_done(self, batch: Batch) -> None:
        """Called once per decoded batch after every variant was dispatched (skip counts)."""
        ...

    def finish(self) -> None:
        """Called after the last batch: compute and report the task's results."""
        ...
