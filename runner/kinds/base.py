"""The study-kind contract: what a kind declares, what it receives, what it returns.

A kind is one module under ``runner/kinds/`` holding one ``Kind`` subclass. It declares its
``Params`` (a pydantic model: defaults and a description for every field), its integer
``version`` (bump it whenever results would change), and ``run(ctx)``. It never touches SQL,
file layout or library-specific model internals: it reads ``ctx.model`` (a
``runner.models.LoadedModel``) and ``ctx.dataset`` (a ``runner.data.ImageDataset``) and reports
through ``ctx.metric(...)`` and ``ctx.artifact(...)``; the executor stores what it reported.

A kind lives in a folder ``runner/kinds/<name>/`` (or in another package): ``params.py``
(light: pydantic only, imported at plan time), the ``Kind`` declaration in ``__init__.py``,
its run (heavy: torch) and its report section (``report.py``: ``SECTION``). The registry finds
kinds through the ``vitstudy.kinds`` entry-point group. Evaluation kinds that can share one
loop over a (model, dataset) pair (the fused pass) implement ``evaluator(ctx)`` instead of
``run``; see ``runner/kinds/evaluation.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from runner.schema import Seed  # noqa: F401 - kinds declare their seed params with it

if TYPE_CHECKING:  # heavy imports stay out of the CLI's import path
    import torch

    from runner.data.base import ImageDataset
    from runner.kinds.fusion import Evaluator
    from runner.kinds.reporting import ReportSection
    from runner.models.base import LoadedModel, ModelInfo



@dataclass(frozen=True)
class SiteShape:
    """The part of a site (``runner.models.SiteInfo``) a plan reads: name, block, kind, width."""

    name: str
    layer: int | None
    what: str
    n_features: int


@dataclass(frozen=True)
class ModelShape:
    """What ``Kind.split`` reads of a model: its name, depth and sites, the fields of
    ``runner.models.ModelInfo`` a split needs. Plain data, kept on disk by the planner so that
    planning a study again imports no torch."""

    name: str
    depth: int
    sites: dict[str, SiteShape]

    @classmethod
    def of(cls, info: Any) -> ModelShape:
        """The shape of a ``ModelInfo``."""
        return cls(info.name, info.depth, {
            name: SiteShape(name, s.layer, s.what, s.n_features) for name, s in info.sites.items()})

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth,
                "sites": [[s.name, s.layer, s.what, s.n_features] for s in self.sites.values()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelShape:
        sites = [SiteShape(*row) for row in data["sites"]]
        return cls(data["name"], int(data["depth"]), {s.name: s for s in sites})


class KindParams(BaseModel):
    """Base for every kind's params: unknown keys are errors, values are validated, and a
    float param is finite (a NaN or inf radius or weight would silently store nonsense)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class MetricRow:
    """One number a task measured, with the dimensions it varies over."""

    name: str
    value: float
    variant: str | None = None
    layer: int | None = None
    feature: int | None = None
    x: float | None = None
    position: int | None = None


@dataclass(frozen=True)
class ArtifactRow:
    """One file a task produced, already written to the artifact store."""

    role: str
    path: str  # relative to the store root
    sha256: str
    bytes: int
    layer: int | None = None
    feature: int | None = None
    rank: int | None = None


@dataclass
class TaskResult:
    """Everything a task reported; the executor commits it in one transaction."""

    metrics: list[MetricRow] = field(default_factory=list)
    artifacts: list[ArtifactRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # counts, warnings: stored as JSON


class ArtifactSink:
    """Where ``ctx.artifact`` sends bytes; the store implements it (``runner.store.Store``)."""

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, str, int]:  # pragma: no cover
        """Store ``data`` durably and return (relative path, sha256, size)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Work:
    """What an ETA is computed from: the current phase's work done and its total, in the
    phase's own cost unit (items of equal cost by default). A new phase (``set_total``) means
    a new unit, so a rate measured on one phase never predicts another."""

    phase: int
    done: float
    total: float | None


def truncated_forward_cost(layer: int) -> float:
    """Relative cost of a forward stopped after block ``layer``: its blocks plus about one
    block's worth for the input (embedding, augmentation) and the readout."""
    return layer + 2.0


class Progress:
    """Progress of one task in items (images, steps, epochs); the executor displays it.
    Items of unequal cost also report their ``work``, so the ETA stays honest."""

    def __init__(self, on_update: Callable[[int, int | None, Work], None] | None = None
                 ) -> None:
        self.done = 0
        self.total: int | None = None
        self.phase = 0
        self.work_done = 0.0
        self.work_total: float | None = None
        self._on_update = on_update

    def set_total(self, total: int, *, work: float | None = None) -> None:
        """Start a phase that ends at ``total`` items; ``work`` is the cost of its
        ``total - done`` items in any unit (default: one per item)."""
        self.total = total
        self.phase += 1
        self.work_done = 0.0
        self.work_total = float(total - self.done) if work is None else float(work)
        self._notify()

    def advance(self, n: int = 1, *, work: float | None = None) -> None:
        """``n`` more items done, costing ``work`` units (default: ``n``)."""
        self.done += n
        self.work_done += n if work is None else work
        self._notify()

    def _notify(self) -> None:
        if self._on_update is not None:
            self._on_update(self.done, self.total,
                            Work(self.phase, self.work_done, self.work_total))


@dataclass
class Upstream:
    """A finished upstream task: its key and its artifacts as absolute paths by role."""

    key: str
    kind: str
    artifacts: dict[str, Path]


#: The arithmetic of the forward passes (``vitstudy run --precision``): ``fp32`` as always;
#: ``tf32`` lets CUDA matmuls and convolutions round their inputs to TF32 (no effect on a
#: CPU); ``bf16`` autocasts the forwards to bfloat16, their outputs cast back to float32.
PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``; else ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of "
                         f"{', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def precision_scope(device: str | torch.device, precision: str = "fp32") -> Iterator[None]:
    """Run the forwards inside at ``precision`` on ``device``: ``fp32`` changes nothing,
    ``tf32`` turns on the TF32 flags (restored after), ``bf16`` is ``torch.autocast``. Only
    model forwards belong inside: inputs and optimized parameters stay float32."""
    if check_precision(precision) == "fp32":
        yield
        return
    import torch

    if precision == "bf16":
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
        return
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [flag.allow_tf32 for flag in flags]
    for flag in flags:
        flag.allow_tf32 = True
    try:
        yield
    finally:
        for flag, value in zip(flags, before, strict=True):
            flag.allow_tf32 = value


@dataclass
class TaskContext:
    """What a kind's ``run`` gets. Model and dataset are loaded lazily by the executor."""

    key: str
    kind: str
    params: KindParams
    seed: int
    sink: ArtifactSink
    device: str = "cpu"
    batch_size: int = 64
    workers: int = 0
    #: batches each decode worker keeps ready ahead of the model (DataLoader prefetch_factor)
    prefetch: int = 2
    #: the forwards' arithmetic (``PRECISIONS``); kinds running their own forwards use
    #: ``autocast()``
    precision: str = "fp32"
    model_name: str | None = None
    dataset_name: str | None = None
    upstream: dict[str, Upstream] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    result: TaskResult = field(default_factory=TaskResult)
    load_model: Callable[[], LoadedModel] | None = None
    load_dataset: Callable[[], ImageDataset] | None = None
    #: opens another dataset of the study by name (for params listed in ``dataset_params``)
    open_dataset: Callable[[str], ImageDataset] | None = None
    #: runs an evaluator's pass over ``dataset`` with ``model`` (the executor's fused loop with
    #: this one evaluator); re-raises the evaluator's error
    run_pass: Callable[[Evaluator], None] | None = None
    log: Callable[[str], None] = print

    @property
    def model(self) -> LoadedModel:
        if self.load_model is None:
            raise RuntimeError(f"kind {self.kind!r} asked for a model but its task has none")
        return self.load_model()

    @property
    def dataset(self) -> ImageDataset:
        if self.load_dataset is None:
            raise RuntimeError(f"kind {self.kind!r} asked for a dataset but its task has none")
        return self.load_dataset()

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Where a kind runs a model forward itself: ``with ctx.autocast(): model(x)`` runs it
        at the run's ``precision`` (cast float outputs back with ``.float()``)."""
        return precision_scope(self.device, self.precision)

    def evaluate(self, evaluator: Evaluator) -> None:
        """Run ``evaluator`` over the task's dataset on its own, as the fused pass would."""
        if self.run_pass is None:
            raise RuntimeError(f"kind {self.kind!r}: this executor gave no evaluation pass")
        self.run_pass(evaluator)

    def extra_dataset(self, param: str) -> ImageDataset:
        """The dataset a ``dataset_params`` param names (e.g. train's ``val``)."""
        name = getattr(self.params, param)
        if self.open_dataset is None or name is None:
            raise RuntimeError(f"kind {self.kind!r}: no dataset for param {param!r}")
        return self.open_dataset(name)

    def metric(self, name: str, value: float, **dims: Any) -> None:
        """Record one metric; ``dims`` are variant, layer, feature, x, position."""
        self.result.metrics.append(MetricRow(name=name, value=float(value), **dims))

    def artifact(
        self,
        role: str,
        payload: Any,
        *,
        layer: int | None = None,
        feature: int | None = None,
        rank: int | None = None,
    ) -> ArtifactRow:
        """Store a payload (bytes, PIL image, numpy array, dict, torch state) as an artifact."""
        data, suffix = encode_payload(payload)
        path, sha, size = self.sink.put_bytes(data, suffix)
        row = ArtifactRow(role, path, sha, size, layer=layer, feature=feature, rank=rank)
        self.result.artifacts.append(row)
        return row

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter stored with the task (skipped images, images without boxes)."""
        self.result.info[name] = self.result.info.get(name, 0) + n


def encode_payload(payload: Any) -> tuple[bytes, str]:
    """Serialize an artifact payload to bytes and pick its file suffix."""
    if isinstance(payload, bytes):
        return payload, ".bin"
    if isinstance(payload, dict) and payload and all(
        type(v).__module__.startswith("numpy") for v in payload.values()
    ):
        import numpy as np

        buf = io.BytesIO()
        np.savez_compressed(buf, **payload)
        return buf.getvalue(), ".npz"
    if isinstance(payload, dict) and not _is_tensor_dict(payload):
        return json.dumps(payload, sort_keys=True, indent=1).encode(), ".json"
    module = type(payload).__module__
    if module.startswith("PIL."):
        buf = io.BytesIO()
        payload.save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if module.startswith("numpy"):
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, payload, allow_pickle=False)
        return buf.getvalue(), ".npy"
    if module.startswith("matplotlib"):
        buf = io.BytesIO()
        payload.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        return buf.getvalue(), ".png"
    if _is_tensor_dict(payload):
        import torch

        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue(), ".pt"
    raise TypeError(f"cannot store an artifact of type {type(payload).__name__}")


def _is_tensor_dict(payload: Any) -> bool:
    return isinstance(payload, dict) and any(
        type(v).__module__.startswith("torch") for v in payload.values()
    )


class Kind:
    """Base class of study kinds. Subclasses set the ClassVars and implement ``run``."""

    name: ClassVar[str]
    version: ClassVar[int]
    Params: ClassVar[type[KindParams]]
    needs_model: ClassVar[bool] = True
    needs_dataset: ClassVar[bool] = True
    #: True for kinds whose ``evaluator`` can join the fused pass over a (model, dataset).
    fusable: ClassVar[bool] = False
    #: One line for ``vitstudy kinds`` and the README.
    summary: ClassVar[str] = ""
    #: Params that name another dataset of the study; the planner checks the name exists and
    #: hashes that dataset's identity (not its name) into the task key.
    dataset_params: ClassVar[tuple[str, ...]] = ()
    #: True for kinds that read object boxes: their dataset must have them (`boxes:` for an
    #: ImageNet-layout folder); checked when the study is planned.
    needs_boxes: ClassVar[bool] = False
    #: True for a kind that trains its model from scratch: the executor builds the model
    #: untrained, and the task's ``checkpoint`` artifact becomes the weights of the tasks
    #: downstream of it.
    trains_model: ClassVar[bool] = False
    #: Params that only shape the plan (how ``split`` cuts an entry into tasks), never a
    #: result: left out of the task key, so that changing them reuses every task they leave
    #: the same.
    plan_only: ClassVar[tuple[str, ...]] = ()

    def requires_dataset(self, params: KindParams) -> bool:
        """Whether a task with these params needs the entry's ``dataset:`` (checked on load)."""
        return self.needs_dataset

    def check(self, params: KindParams, model: ModelInfo | None) -> None:
        """Plan-time validation against the model's sites; raise ``PlanError``."""

    def check_dataset(self, params: KindParams, name: str, spec: Any) -> None:
        """Plan-time validation of the dataset ``name`` (its ``spec`` from the study file) that
        a task reads, after it was found readable; raise ``DatasetError``."""

    def split(self, params: KindParams, model: Callable[[], ModelShape] | None
              ) -> list[KindParams]:
        """The params of each task an entry's params become (default: one task, as given).
        ``model`` returns the task's model's sites (inspected, and cached on disk, on the
        first call only: call it only when the split needs them); None for a task without a
        model. Each part is a task of its own, keyed by its own params; raise ``PlanError``."""
        return [params]

    def key_params(self, params: KindParams) -> dict[str, Any]:
        """The params as they enter the task key (JSON values): all of them, but those in
        ``plan_only``."""
        return params.model_dump(mode="json", exclude=set(self.plan_only) or None)

    def run(self, ctx: TaskContext) -> None:
        """Run one task: a fusable kind runs its evaluator alone (the fused loop with one
        evaluator); any other kind calls ``run(ctx)`` of its implementation."""
        if self.fusable:
            ctx.evaluate(self.evaluator(ctx))
        else:
            self.implementation().run(ctx)

    def evaluator(self, ctx: TaskContext) -> Evaluator:
        """For fusable kinds: this task's share of the fused pass, made by ``evaluator(ctx)``
        of the kind's implementation."""
        if not self.fusable:
            raise NotImplementedError(f"kind {self.name!r} is not fusable")
        return self.implementation().evaluator(ctx)

    def implementation(self) -> ModuleType:
        """The kind's heavy module (torch and the rest): ``run`` beside its declaration
        (``runner.kinds.lowpass.run``), imported on first use so that planning stays light.
        A kind declared in a single module overrides ``run`` or ``evaluator`` instead."""
        return importlib.import_module(type(self).__module__ + ".run")

    def report_section(self) -> ReportSection | None:
        """The section this kind adds to a study's report: ``SECTION`` of the module
        ``report`` beside the kind's declaration (``runner.kinds.lowpass.report``), if any."""
        package = type(self).__module__
        if not hasattr(sys.modules[package], "__path__"):  # a one-module kind has no section
            return None
        if importlib.util.find_spec(package + ".report") is None:
            return None
        return importlib.import_module(package + ".report").SECTION
