"""The fused pass: every evaluation task on one (model, dataset) shares one loop over the data.

Each batch is decoded once. Every input variant the tasks asked for is derived from the decoded
batch on the device by the variant itself (``Variant.derive``), each distinct variant goes
through the model once, and each readout is computed once (``runner.models.readouts``) and
handed to every evaluator that asked for it. The loop knows no kind and no variant by name.
A task run on its own goes through this same loop with one evaluator (``run_alone``), so its
results do not depend on which other tasks shared its pass.

For a GPU, batches are decoded by worker processes into page-locked memory, ``prefetch`` of
them ahead per worker, and copied without blocking; the model forwards (and only they) run at
the run's ``precision``, their outputs cast back to float32 before any evaluator sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch

from runner.data.base import Batch, ImageDataset
from runner.kinds.base import Progress, TaskContext, check_precision, precision_scope
from runner.kinds.fusion import BatchInputs, Evaluator, Variant
from runner.models.base import LoadedModel
from runner.models.readouts import Readout, compute_readouts
from runner.ops.pixels import to_unit


def run_fused(
    evaluators: Iterable[Evaluator],
    model: LoadedModel,
    dataset: ImageDataset,
    *,
    batch_size: int,
    device: str = "cpu",
    workers: int = 0,
    prefetch: int | None = None,
    precision: str = "fp32",
    progress: Progress | None = None,
) -> dict[str, BaseException | None]:
    """One pass over ``dataset`` feeding every evaluator; returns each task's error or None.

    Each batch is decoded once (by ``workers`` processes, ``prefetch`` batches ahead each);
    each distinct variant is derived on ``device`` and goes through the model once, at
    ``precision``, with every readout any evaluator asked of it; ``progress`` counts images.
    """
    fused = _FusedPass(list(evaluators), model, torch.device(device), check_precision(precision))
    if progress is not None:
        progress.set_total(len(dataset))
    try:
        with torch.inference_mode():
            loading = loader_options(fused.device, workers, prefetch)
            for batch in dataset.batches(batch_size, **loading):
                if not fused.active:
                    break
                fused.process(batch)
                if progress is not None:
                    progress.advance(len(batch.indices) + batch.skipped)
    except Exception as error:  # noqa: BLE001 - the data or a shared step broke: all fail
        for evaluator in fused.active:
            fused.errors[evaluator.key] = error
        fused.active.clear()
    for evaluator in list(fused.active):
        fused.call(evaluator, evaluator.finish)
    return fused.errors


def pass_settings(ctx: TaskContext) -> dict[str, Any]:
    """The ``run_fused`` settings a task's context carries (batch, device, decoding,
    precision): the same for a task run alone and for the fused pass its group shares."""
    return {"batch_size": ctx.batch_size, "device": ctx.device, "workers": ctx.workers,
            "prefetch": ctx.prefetch, "precision": ctx.precision}


def pins_memory(device: torch.device) -> bool:
    """Whether decoded batches go to page-locked memory: only for a CUDA device, where it
    lets the copy overlap the work (elsewhere pinning costs and gains nothing)."""
    return device.type == "cuda"


def loader_options(device: torch.device, workers: int, prefetch: int | None) -> dict[str, Any]:
    """``ImageDataset.batches`` options of a pass: ``workers``, and only what differs from a
    plain decode (``prefetch`` with workers, ``pin_memory`` for CUDA), so that a dataset
    overriding ``batches`` need not take the rest."""
    options: dict[str, Any] = {"workers": workers}
    if workers > 0 and prefetch is not None:
        options["prefetch"] = prefetch
    if pins_memory(device):
        options["pin_memory"] = True
    return options


def run_alone(evaluator: Evaluator, ctx: TaskContext) -> None:
    """Run one fusable task on its own: the fused loop with a single evaluator; re-raise."""
    errors = run_fused([evaluator], ctx.model, ctx.dataset, progress=ctx.progress,
                       **pass_settings(ctx))
    error = errors[evaluator.key]
    if error is not None:
        raise error


def pass_runner(ctx: TaskContext) -> Callable[[Evaluator], None]:
    """What an executor puts in ``TaskContext.run_pass``: ``run_alone`` on that task."""
    return lambda evaluator: run_alone(evaluator, ctx)


#: (variant asked for, the evaluator, the readouts it wants of it)
_Consumer = tuple[Variant, Evaluator, frozenset[Readout]]


class _FusedPass:
    """The state of one fused pass: who wants what, who is still running, who failed."""

    def __init__(self, evaluators: list[Evaluator], model: LoadedModel, device: torch.device,
                 precision: str = "fp32") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.precision = precision
        self.errors: dict[str, BaseException | None] = {ev.key: None for ev in evaluators}
        self.active: list[Evaluator] = []
        # variant computed -> readouts; variant computed -> its consumers
        self.plan: dict[Variant, set[Readout]] = {}
        self.consumers: dict[Variant, list[_Consumer]] = {}
        self.memo: dict[Hashable, Any] = {}  # kept across batches (filters' transfer functions)
        for evaluator in evaluators:
            requests = self.call(evaluator, evaluator.requests)
            if requests is None:
                continue
            self.active.append(evaluator)
            for variant, readouts in requests.items():
                computed = variant.canonical(model.preprocess)
                self.plan.setdefault(computed, set()).update(readouts)
                self.consumers.setdefault(computed, []).append(
                    (variant, evaluator, frozenset(readouts)))
        self.plan = dict(sorted(self.plan.items(), key=lambda item: item[0].stage))

    def call(self, evaluator: Evaluator, method: Callable[..., Any], *args: Any) -> Any:
        """Call an evaluator's method; an exception fails that evaluator only."""
        if self.errors[evaluator.key] is not None:
            return None
        try:
            return method(*args)
        except Exception as error:  # noqa: BLE001 - one task's failure must not stop the others
            self.fail(evaluator, error)
            return None

    def fail(self, evaluator: Evaluator, error: BaseException) -> None:
        self.errors[evaluator.key] = error
        if evaluator in self.active:
            self.active.remove(evaluator)

    def process(self, batch: Batch) -> None:
        """Derive every variant of one decoded batch, run the model, dispatch the readouts."""
        inputs = BatchInputs([to_unit(image, self.device) for image in batch.images],
                             batch.boxes, self.model.preprocess, self.device, self.memo)
        labels = batch.labels.to(self.device, non_blocking=True)
        for variant, readouts in self.plan.items():
            consumers = [c for c in self.consumers[variant] if c[1] in self.active]
            if consumers and batch.images:
                self._dispatch(variant, readouts, consumers, inputs, batch, labels)
        for evaluator in list(self.active):
            self.call(evaluator, evaluator.batch_done, batch)

    def _dispatch(self, variant: Variant, readouts: set[Readout], consumers: list[_Consumer],
                  inputs: BatchInputs, batch: Batch, labels: torch.Tensor) -> None:
        """One variant of one batch: derive it, compute its readouts, hand them out."""
        try:
            derived = variant.derive(inputs)
        except Exception as error:  # noqa: BLE001 - only the tasks that need it fail
            for _, evaluator, _ in consumers:
                self.fail(evaluator, error)
            return
        rows = derived.rows
        if derived.x is None or (rows is not None and not rows):
            return  # e.g. a masked variant, and no image of this batch has boxes
        with precision_scope(self.device, self.precision):
            values, failures = compute_readouts(self.model, derived.x, readouts)
        if self.precision != "fp32":  # evaluators (top-k, accuracies) see float32
            values = {readout: value.float() for readout, value in values.items()}
        sel_labels = labels if rows is None else labels[rows]
        sel_indices = batch.indices if rows is None else batch.indices[rows]
        for asked, evaluator, wanted in consumers:
            failed = [failures[r] for r in sorted(wanted, key=repr) if r in failures]
            if failed:
                self.fail(evaluator, failed[0])
                continue
            view = {readout: values[readout] for readout in wanted}
            self.call(evaluator, evaluator.update, asked, view, sel_labels, sel_indices)
