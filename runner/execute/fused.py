"""The fused pass: every evaluation task on one (model, dataset) shares one loop over the data.

Each batch is decoded once. Every input *variant* (natural, foreground-only, low-passed...) is
derived from the decoded batch on the device, each distinct variant goes through the model
once, and each *readout* (logits, patch-token logits, a site's activations...) is computed once
and handed to every evaluator that asked for it. A fusable kind contributes an ``Evaluator``;
its ``run(ctx)`` is this same loop with that one evaluator (``run_alone``), so a task's results
do not depend on which other tasks shared its pass.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # torch stays out of planning's import path
    import torch

    from runner.data.base import Batch, ImageDataset
    from runner.kinds.base import Progress, TaskContext
    from runner.models.base import LoadedModel


# ------------------------------------------------------------------------------- variants

#: Variant names the loop knows how to derive.
MASKED = ("fg", "bg")  # box masking at native resolution, before resize and crop
FILTERED = ("lowpass", "highpass", "gaussian", "gaussian_highpass")  # after resize and crop
FILLS = ("black", "mean")


@dataclass(frozen=True)
class Variant:
    """One model input derived from a decoded batch; equal variants are computed once.

    ``name``: ``natural``; ``fg`` (only box pixels kept) or ``bg`` (box pixels blanked), with
    ``fill`` ``black`` or ``mean`` (the model's normalization mean); ``lowpass``/``highpass``
    (ideal circular filter, ``x`` = radius in cycles per image) or ``gaussian``/
    ``gaussian_highpass`` (``x`` = sigma in cycles per image).
    """

    name: str
    fill: str | None = None
    x: float | None = None

    def __post_init__(self) -> None:
        if self.name in MASKED:
            if self.fill not in FILLS or self.x is not None:
                raise ValueError(f"variant {self.name!r} needs fill in {FILLS} and no x")
        elif self.name in FILTERED:
            if self.x is None or self.x < 0 or self.fill is not None:
                raise ValueError(f"variant {self.name!r} needs x >= 0 and no fill")
        elif self.name != "natural" or self.fill is not None or self.x is not None:
            raise ValueError(f"unknown variant {self!r}")

    @property
    def needs_boxes(self) -> bool:
        """Masked variants exist only for images with at least one box."""
        return self.name in MASKED


NATURAL = Variant("natural")


def masked(region: str, fill: str = "black") -> Variant:
    """The foreground-only (``fg``) or background-only (``bg``) input."""
    return Variant(region, fill=fill)


def filtered(name: str, x: float) -> Variant:
    """A frequency-filtered input (``lowpass``, ``highpass``, ``gaussian``...), ``x`` in cycles."""
    return Variant(name, x=float(x))


# ------------------------------------------------------------------------------- readouts

#: (B, classes): the model's logits.
LOGITS = "logits"
#: (B, N, classes): the classification head (final norm + classifier) on each patch token alone,
#: patch tokens only (prefix tokens left out), row-major over the patch grid. ViTs only.
TOKEN_LOGITS = "token_logits"
#: (B, classes): the classifier on the mean over patch tokens of the final-normed tokens, which
#: is the mean of ``TOKEN_LOGITS`` over positions (the classifier is linear). ViTs only.
MEAN_TOKEN_LOGITS = "mean_token_logits"


def site(name: str) -> str:
    """Readout of a model site's activations (``model.capture``), e.g. ``site:block3.mlp``."""
    return f"site:{name}"


def isolated(layer: int) -> str:
    """Readout of the logits with CLS isolated through blocks [0, layer). ViTs only."""
    return f"isolated:{int(layer)}"


# ------------------------------------------------------------------------------ evaluator


class Evaluator(Protocol):
    """One task's share of the fused pass: what it needs from each batch, and what it does.

    The loop calls ``requests()`` once, then for every batch: ``update`` once per requested
    variant (with exactly the readouts asked for that variant; a masked variant is skipped for
    a batch with no boxes), then ``batch_done(batch)``; after the last batch, ``finish()``,
    which reports metrics and artifacts through the task's ``TaskContext``. Everything runs
    under ``torch.inference_mode()``. An exception in any of these fails this task only.
    """

    #: The task's key; ``run_fused`` reports errors by it.
    key: str

    def requests(self) -> Mapping[Variant, Collection[str]]:
        """The variants this task needs, each with the readouts it needs on that variant."""
        ...

    def update(
        self,
        variant: Variant,
        readouts: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> None:
        """Consume one batch of one variant. Readouts and ``labels`` are on the pass's device,
        ``indices`` (dataset indices, int64) on the CPU; all align with the readouts' first
        axis. Variants with ``needs_boxes`` hold only the batch's images that have boxes.
        Readouts are shared between evaluators: read them, do not modify them in place."""
        ...

    def batch_done(self, batch: Batch) -> None:
        """Called once per decoded batch after every variant was dispatched (skip counts)."""
        ...

    def finish(self) -> None:
        """Called after the last batch: compute and report the task's results."""
        ...


# ------------------------------------------------------------------------------- the loop


def run_fused(
    evaluators: Iterable[Evaluator],
    model: LoadedModel,
    dataset: ImageDataset,
    *,
    batch_size: int,
    device: str = "cpu",
    workers: int = 0,
    progress: Progress | None = None,
) -> dict[str, BaseException | None]:
    """One pass over ``dataset`` feeding every evaluator; returns each task's error or None.

    Each batch is decoded once; each distinct variant is derived on ``device`` and goes through
    the model once, with every readout any evaluator asked of it; ``progress`` counts images.
    """
    import torch

    fused = _FusedPass(list(evaluators), model, torch.device(device))
    if progress is not None:
        progress.set_total(len(dataset))
    try:
        with torch.inference_mode():
            for batch in dataset.batches(batch_size, workers=workers):
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


def run_alone(evaluator: Evaluator, ctx: TaskContext) -> None:
    """Run one fusable task on its own: the fused loop with a single evaluator; re-raise."""
    errors = run_fused(
        [evaluator], ctx.model, ctx.dataset,
        batch_size=ctx.batch_size, device=ctx.device, workers=ctx.workers,
        progress=ctx.progress,
    )
    error = errors[evaluator.key]
    if error is not None:
        raise error


def computed_as(variant: Variant, size: int) -> Variant:
    """The variant whose input equals ``variant``'s at model size ``size`` (a low-pass past the
    spectrum's corner is the natural input), so that both share one forward."""
    from runner.ops.frequency import is_identity

    if variant.name in FILTERED and is_identity(variant.name, variant.x, size, size):
        return NATURAL
    return variant


class _FusedPass:
    """The state of one fused pass: who wants what, who is still running, who failed."""

    def __init__(self, evaluators: list[Evaluator], model: LoadedModel, device: torch.device):
        self.model = model.to(device).eval()
        self.device = device
        self.errors: dict[str, BaseException | None] = {ev.key: None for ev in evaluators}
        self.active: list[Evaluator] = []
        # computed variant -> readouts; computed variant -> [(asked variant, evaluator, readouts)]
        self.plan: dict[Variant, set[str]] = {}
        self.consumers: dict[Variant, list[tuple[Variant, Evaluator, frozenset[str]]]] = {}
        size = model.preprocess.size
        for evaluator in evaluators:
            requests = self.call(evaluator, evaluator.requests)
            if requests is None:
                continue
            self.active.append(evaluator)
            for variant, readouts in requests.items():
                computed = computed_as(variant, size)
                self.plan.setdefault(computed, set()).update(readouts)
                self.consumers.setdefault(computed, []).append(
                    (variant, evaluator, frozenset(readouts)))
        # natural first, then masked, then filtered (which reuse the natural input)
        order = {"natural": 0, "fg": 1, "bg": 1}
        self.plan = dict(sorted(self.plan.items(), key=lambda kv: order.get(kv[0].name, 2)))
        self.filter_masks: dict[Variant, torch.Tensor] = {}  # transfer functions, built once

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
        from runner.ops.pixels import to_unit

        inputs = _BatchInputs(self, [to_unit(image, self.device) for image in batch.images],
                              batch.boxes)
        labels = batch.labels.to(self.device)
        for variant, readouts in self.plan.items():
            consumers = [c for c in self.consumers[variant] if c[1] in self.active]
            if not consumers or not batch.images:
                continue
            try:
                rows, x = inputs.get(variant)
            except Exception as error:  # noqa: BLE001 - only the tasks that need it fail
                for _, evaluator, _ in consumers:
                    self.fail(evaluator, error)
                continue
            if rows is not None and not rows:
                continue  # a masked variant, and no image of this batch has boxes
            values, failures = compute_readouts(self.model, x, readouts)
            sel_labels = labels if rows is None else labels[rows]
            sel_indices = batch.indices if rows is None else batch.indices[rows]
            for asked, evaluator, wanted in consumers:
                failed = [failures[r] for r in sorted(wanted) if r in failures]
                if failed:
                    self.fail(evaluator, failed[0])
                    continue
                view = {name: values[name] for name in wanted}
                self.call(evaluator, evaluator.update, asked, view, sel_labels, sel_indices)
        for evaluator in list(self.active):
            self.call(evaluator, evaluator.batch_done, batch)



class _BatchInputs:
    """The model inputs of one decoded batch, derived on demand and kept while it is processed:
    the natural input and its spectrum are computed once for every variant that needs them."""

    def __init__(self, fused: _FusedPass, native: list[torch.Tensor], boxes: list[tuple]):
        self.fused, self.native, self.boxes = fused, native, boxes
        self._natural: torch.Tensor | None = None
        self._spectrum: torch.Tensor | None = None

    def get(self, variant: Variant) -> tuple[list[int] | None, torch.Tensor]:
        """(rows of the batch it covers, None for all; the model input of those rows)."""
        if variant.needs_boxes:
            rows = [i for i, boxes in enumerate(self.boxes) if boxes]
            return rows, (self._resized(self._masked(variant, rows)) if rows else None)
        if variant == NATURAL:
            return None, self.natural()
        return None, self._filtered(variant)

    def natural(self) -> torch.Tensor:
        if self._natural is None:
            self._natural = self._resized(self.native)
        return self._natural

    def _resized(self, images: list[torch.Tensor]) -> torch.Tensor:
        from runner.ops.pixels import model_batch

        pre = self.fused.model.preprocess
        return model_batch(images, pre.size, pre.crop_pct, pre.interpolation)

    def _masked(self, variant: Variant, rows: list[int]) -> list[torch.Tensor]:
        import torch

        from runner.ops.masking import mask_region

        device = self.fused.device
        if variant.fill == "mean":
            fill = torch.tensor(self.fused.model.preprocess.mean, device=device)
        else:
            fill = torch.zeros(3, device=device)
        return [mask_region(self.native[i], self.boxes[i], variant.name, fill) for i in rows]

    def _filtered(self, variant: Variant) -> torch.Tensor:
        from runner.ops.frequency import apply_mask, filter_mask, spectrum

        natural = self.natural()
        if self._spectrum is None:
            self._spectrum = spectrum(natural)
        masks = self.fused.filter_masks
        if variant not in masks:
            height, width = natural.shape[-2:]
            masks[variant] = filter_mask(variant.name, variant.x, height, width, natural.device)
        return apply_mask(self._spectrum, masks[variant]).to(natural.dtype)


def compute_readouts(
    model: LoadedModel, x: torch.Tensor, readouts: Collection[str]
) -> tuple[dict[str, torch.Tensor], dict[str, BaseException]]:
    """Every requested readout of one model input, sharing the forward between them.

    Returns (values, failures): a readout that cannot be computed (a token readout on a model
    without ``ViTParts``, an unknown site) fails alone, so only the tasks asking for it fail.
    """
    from runner.ops.tokens import isolated_logits, patch_token_logits

    values: dict[str, torch.Tensor] = {}
    failures: dict[str, BaseException] = {}
    wanted = set(readouts)
    sites = sorted(r.removeprefix("site:") for r in wanted if r.startswith("site:"))
    layers = {int(r.removeprefix("isolated:")) for r in wanted
              if r.startswith("isolated:") and r.removeprefix("isolated:").isdigit()}
    token_readouts = wanted & {TOKEN_LOGITS, MEAN_TOKEN_LOGITS} | {isolated(n) for n in layers}
    unknown = wanted - {LOGITS} - token_readouts - {site(s) for s in sites}
    for name in unknown:
        failures[name] = ValueError(f"unknown readout {name!r}")
    vit = model.vit
    if vit is None:
        if LOGITS in wanted:
            _guard(values, failures, [LOGITS], lambda: {LOGITS: model(x)})
        for name in token_readouts:
            failures[name] = ValueError(
                f"readout {name!r} needs token access (ViTParts); "
                f"model {model.info.name!r} has none")
    elif LOGITS in wanted or token_readouts:
        for layer in sorted(n for n in layers if n > vit.depth):
            failures[isolated(layer)] = ValueError(
                f"insertion layer {layer} is past the model's depth {vit.depth}")
            layers.discard(layer)
        patch_readouts = sorted(wanted & {TOKEN_LOGITS, MEAN_TOKEN_LOGITS})
        layer_readouts = [isolated(n) for n in sorted(layers)]
        shared: dict[str, torch.Tensor] = {}

        def forward() -> dict[str, torch.Tensor]:
            shared["tokens"] = vit.embed(x)
            shared["final"] = vit.run_blocks(shared["tokens"], 0, vit.depth)
            return {LOGITS: vit.pool_head(shared["final"])}

        def isolation() -> dict[str, torch.Tensor]:
            by_layer = isolated_logits(vit, shared["tokens"], layers - {0})
            by_layer[0] = values[LOGITS]  # L = 0 is the unmodified model: the same computation
            return {isolated(n): by_layer[n] for n in layers}

        def patch_heads() -> dict[str, torch.Tensor]:
            per_patch = patch_token_logits(vit, shared["final"])
            return {TOKEN_LOGITS: per_patch, MEAN_TOKEN_LOGITS: per_patch.mean(dim=1)}

        _guard(values, failures, [LOGITS, *layer_readouts, *patch_readouts], forward)
        if LOGITS in values and layer_readouts:
            _guard(values, failures, layer_readouts, isolation)
        if LOGITS in values and patch_readouts:
            _guard(values, failures, patch_readouts, patch_heads)
    if sites:
        def capture() -> dict[str, torch.Tensor]:
            acts = model.capture(x, sites)
            return {site(name): acts[name] for name in sites}

        _guard(values, failures, [site(s) for s in sites], capture)
    return {k: v for k, v in values.items() if k in wanted}, failures


def _guard(values: dict, failures: dict, names: list[str], compute: Callable[[], dict]) -> None:
    """Run one shared computation; on error, every readout it would have given fails."""
    try:
        values.update(compute())
    except Exception as error:  # noqa: BLE001
        for name in names:
            failures[name] = error


# ------------------------------------------------------------------ evaluator bookkeeping


class AccuracyEvaluator:
    """Shared bookkeeping of evaluators that measure accuracy: per-image top-1/top-5 hits.

    Subclasses call ``record`` from ``update`` and read ``hits`` in ``finish``. Hits stay
    per image (and per position for patch logits) so that the ``correct`` artifact lets
    confidence intervals be computed later without a rerun.
    """

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.key = ctx.key
        self._hits: dict[str, list[tuple[Any, Any, Any]]] = {}
        self._undefined_logged: set[str] = set()

    def record(
        self, name: str, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> None:
        """Store which images have their label in the top 1 / top 5 of ``logits`` (B, ..., C)."""
        from runner.ops.metrics import topk_correct

        hits = topk_correct(logits, labels, (1, 5))
        self._hits.setdefault(name, []).append(
            (indices.cpu().numpy(), hits[1].cpu().numpy(), hits[5].cpu().numpy()))

    def hits(self, name: str) -> tuple[Any, Any, Any]:
        """(dataset indices, top-1 hits, top-5 hits) of every image recorded under ``name``."""
        import numpy as np

        parts = self._hits.get(name)
        if not parts:
            raise ValueError(f"task {self.ctx.kind!r}: no image was evaluated ({name!r})")
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

    def batch_done(self, batch: Batch) -> None:
        """Count the batch's unreadable images with the task."""
        if batch.skipped:
            self.ctx.count("skipped", batch.skipped)
