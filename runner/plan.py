"""Expand a study into tasks with content-hash keys, and decide which are cached.

``key = sha256(canonical_json({kind, kind_version, params, model_id, dataset_id, upstream,
seed}))``. Params are hashed after validation with defaults filled in; datasets and models by
identity (content, name + tag, file hash), never by path. Paths, device, batch size and
workers are provenance, not identity. A run's ``--precision`` other than fp32 is part of the
key of every task that runs its model's forwards (``precision_key``). Planning imports neither
torch nor timm.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import DatasetError, ModelError, PlanError, SpecError
from runner.kinds import Kind, get_kind
from runner.kinds.base import KindParams, ModelShape, check_precision
from runner.schema import ImagenetDataset
from runner.spec import LoadedStudy, dotted, gc_paused

#: ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, made once:
#: ``dumps`` would build an encoder per call, and a plan makes one call per task.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal content, equal text."""
    return _CANONICAL.encode(obj)


def _tree_encoder() -> Callable[[Any], str] | None:
    """``canonical_json`` of data without cycles (a ``model_dump``), text for text: the C
    encoder that ``_CANONICAL.encode`` makes on every call, made once, and without the
    markers that detect a cycle (shared, they would not be thread-safe). Half the cost of the
    ``canonical_json`` a plan makes per task. None where Python lacks the C encoder."""
    make = json.encoder.c_make_encoder
    if make is None:  # pragma: no cover - CPython has it
        return None
    strings = (json.encoder.encode_basestring_ascii if _CANONICAL.ensure_ascii
               else json.encoder.encode_basestring)
    encode = make(None, _CANONICAL.default, strings, _CANONICAL.indent,
                  _CANONICAL.key_separator, _CANONICAL.item_separator, _CANONICAL.sort_keys,
                  _CANONICAL.skipkeys, _CANONICAL.allow_nan)
    return lambda obj: "".join(encode(obj, 0))


_canonical_tree = _tree_encoder() or canonical_json


def task_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


@dataclass
class Task:
    """One unit of work: a kind applied to one model (and dataset) with fixed params."""

    key: str
    kind: str
    params: KindParams
    key_parts: dict[str, Any]
    model: str | None = None  # the model's name in the study
    dataset: str | None = None  # the dataset's name in the study
    upstream: list[str] = field(default_factory=list)
    seed: int = 0
    entry: int | None = None  # index in the study's `studies:` (None for train tasks)

    @property
    def short(self) -> str:
        return self.key[:10]

    def row(self, study: str) -> dict[str, Any]:
        """The descriptive columns of this task's database row."""
        return {
            "key": self.key,
            "study": study,
            "kind": self.kind,
            "kind_version": self.key_parts["kind_version"],
            "model": self.model,
            "model_id": self.key_parts["model_id"],
            "dataset": self.dataset,
            "dataset_id": self.key_parts["dataset_id"],
            "params": canonical_json(self.key_parts["params"]),
            "key_parts": canonical_json(self.key_parts),
            "upstream": canonical_json(self.upstream),
            "seed": self.seed,
        }

    def params_summary(self, width: int = 60) -> str:
        """Non-default params, short: what tells this task apart from its siblings (a chunk
        task's feature range as ``0..63``); params that only shape the plan are left out."""
        hidden = set(get_kind(self.kind).plan_only)
        defaults = type(self.params)().model_dump(mode="json") if _has_defaults(self.params) else {}
        values = self.params.model_dump(mode="json")  # dataset params by name, not identity
        shown = {k: v for k, v in values.items() if defaults.get(k, None) != v and k not in hidden}
        text = ", ".join(f"{k}={_summary(getattr(self.params, k), v)}"
                         for k, v in shown.items()) or "defaults"
        return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class Plan:
    study: LoadedStudy
    tasks: list[Task]
    precision: str = "fp32"  # the forwards' arithmetic the keys were made for (and run at)

    def by_key(self) -> dict[str, Task]:
        return {t.key: t for t in self.tasks}


class _Identities:
    """Dataset and model identities of one study, computed once each; a missing folder or
    weights file is a ``SpecError`` at its entry."""

    def __init__(self, loaded: LoadedStudy) -> None:
        self.loaded = loaded
        self.datasets: dict[str, str] = {}
        self.models: dict[str, str] = {}

    def dataset(self, name: str | None) -> str | None:
        from runner.data import dataset_identity

        if name is not None and name not in self.datasets:
            try:
                self.datasets[name] = dataset_identity(self.loaded.study.datasets[name], name)
            except DatasetError as e:  # a folder that is not there
                raise self._error(("datasets", name), e) from None
        return None if name is None else self.datasets[name]

    def model(self, name: str) -> str:
        from runner.models import model_identity

        if name not in self.models:
            spec = self.loaded.study.models[name]
            try:
                self.models[name] = model_identity(spec, base_dir=self.loaded.base_dir)
            except ModelError as e:  # a weights file that is not there
                key = ("models", name) + ((e.field,) if e.field in spec.model_fields_set else ())
                raise self._error(key, e) from None
        return self.models[name]

    def _error(self, key: tuple, e: Exception) -> SpecError:
        return SpecError(self.loaded.path, self.loaded.line_of(*key), dotted(key), str(e))


@gc_paused()
def make_plan(loaded: LoadedStudy, precision: str = "fp32") -> Plan:
    """Every task of the study, upstream train tasks first, without duplicates; its tasks run
    their forwards at ``precision`` (``runner.kinds.base.PRECISIONS``)."""
    check_precision(precision)
    study = loaded.study
    ids = _Identities(loaded)
    dataset_id, model_id = ids.dataset, ids.model
    tasks: dict[str, Task] = {}
    train_keys: dict[str, str] = {}

    def add(task: Task) -> None:
        tasks.setdefault(task.key, task)

    for name, spec in study.models.items():
        if spec.train is None:
            continue
        train_kind = get_kind("train")
        params = train_kind.Params.model_validate(spec.train.model_dump(exclude={"dataset"}))
        t = _TaskMaker("train", model=name, model_id=model_id(name),
                       dataset=spec.train.dataset, dataset_id=dataset_id(spec.train.dataset),
                       upstream=[], seed=0, entry=None, dataset_id_of=dataset_id,
                       precision=precision).task(params)
        train_keys[name] = t.key
        add(t)

    shapes = _Shapes(loaded)
    for i, entry in enumerate(study.studies):
        makers: dict[str | None, _TaskMaker] = {}
        for params in loaded.entry_params(i):  # validated once, by load_study
            for model in entry.models or [None]:
                if model not in makers:  # identities in the order the tasks need them
                    makers[model] = _TaskMaker(
                        entry.kind, model=model, model_id=model_id(model) if model else None,
                        dataset=entry.dataset, dataset_id=dataset_id(entry.dataset),
                        upstream=[train_keys[model]] if model in train_keys else [],
                        seed=entry.seed, entry=i, dataset_id_of=dataset_id, precision=precision)
                for part in shapes.split(makers[model].kind, params, model, i):
                    add(makers[model].task(part))
    _check_distinct_models(loaded, ids.models)
    _check_planned_count(loaded, list(tasks.values()))
    return Plan(loaded, list(tasks.values()), precision)


def _check_planned_count(loaded: LoadedStudy, tasks: list[Task]) -> None:
    """The study's own limit (``load_study``'s ``max_tasks``) once chunks are split: a tiny
    ``chunk`` on a wide layer must not plan hundreds of thousands of tasks unasked."""
    limit = loaded.max_tasks
    if len(tasks) <= limit:
        return
    per_entry: dict[int, int] = {}
    for t in tasks:
        if t.entry is not None:
            per_entry[t.entry] = per_entry.get(t.entry, 0) + 1
    biggest = max(per_entry, key=per_entry.__getitem__)
    key = ("studies", biggest, "params", "chunk") if loaded.line_of(
        "studies", biggest, "params", "chunk") != loaded.line_of("studies", biggest, "params") \
        else ("studies", biggest)
    raise SpecError(loaded.path, loaded.line_of(*key), dotted(key),
                    f"the study plans {len(tasks):,} tasks ({per_entry[biggest]:,} from this "
                    f"entry, its features in chunks), more than the limit of {limit:,}. Use a "
                    f"larger `chunk` (or `chunk: null`); to plan and run it anyway, give "
                    f"`--max-tasks {len(tasks)}` to validate, plan and run (or set "
                    "VITSTUDY_MAX_TASKS)")


class _Shapes:
    """Each model's sites as ``Kind.split`` reads them (``ModelShape``): from the on-disk cache
    (``$VITSTUDY_CACHE/shapes/``), else inspected on the meta device (this imports torch, once
    per model and machine) and cached. A split that needs no shapes never asks."""

    #: Bump when what a shape holds, or how sites are found, changes.
    FORMAT = 1

    def __init__(self, loaded: LoadedStudy) -> None:
        self.loaded = loaded
        self.memo: dict[str, ModelShape] = {}

    def split(self, kind: Kind, params: KindParams, model: str | None,
              entry: int) -> list[KindParams]:
        """``kind.split`` of an entry's params on ``model``; a ``PlanError`` is the entry's."""
        try:
            return kind.split(params, None if model is None else lambda: self.of(model))
        except PlanError as e:  # a layer or feature the model lacks (its own: SpecError)
            key = ("studies", entry)
            raise SpecError(self.loaded.path, self.loaded.line_of(*key), dotted(key),
                            f"{kind.name} on model {model!r}: {e}") from None

    def of(self, name: str) -> ModelShape:
        if name not in self.memo:
            self.memo[name] = self._load(name)
        return self.memo[name]

    def _load(self, name: str) -> ModelShape:
        from runner.data.cache import read_json, write_json_atomic

        spec = self.loaded.study.models[name]
        path = self._file(spec)
        data = read_json(path)
        if isinstance(data, dict) and data.get("format") == self.FORMAT:
            return ModelShape.from_json(data)
        from runner.models import inspect_model

        try:
            shape = ModelShape.of(inspect_model(spec, base_dir=self.loaded.base_dir,
                                                shapes_only=True))
        except ModelError as e:
            key = ("models", name) + ((e.field,) if e.field in spec.model_fields_set else ())
            raise SpecError(self.loaded.path, self.loaded.line_of(*key), dotted(key),
                            str(e)) from None
        write_json_atomic(path, {**shape.to_json(), "format": self.FORMAT})
        return shape

    def _file(self, spec: Any) -> Path:
        """The cache file of a model entry's shape: keyed by the entry (but its training), the
        study's folder for a local file, and the versions of the model libraries."""
        from importlib import metadata

        from runner.data.cache import cache_root

        versions = []
        for package in ("vitstudy", "torch", "timm", "open_clip_torch", "torchvision"):
            try:
                versions.append(metadata.version(package))
            except metadata.PackageNotFoundError:
                versions.append(None)
        where = str(self.loaded.base_dir) if spec.source == "checkpoint" else None
        ident = canonical_json([spec.model_dump(mode="json", exclude={"train"}), where,
                                versions, self.FORMAT])
        return cache_root() / "shapes" / f"{hashlib.sha256(ident.encode()).hexdigest()}.json"


def _check_distinct_models(loaded: LoadedStudy, model_ids: dict[str, str]) -> None:
    """Two used model entries with one identity (and training) would make the same tasks, and
    the second name would vanish from results and report: refuse, naming both."""
    first_of: dict[str, str] = {}
    for name, spec in loaded.study.models.items():
        if name not in model_ids:
            continue
        train = spec.train.model_dump_json() if spec.train is not None else ""
        identity = model_ids[name] + "|" + train
        if identity in first_of:
            other = first_of[identity]
            raise SpecError(loaded.path, loaded.line_of("models", name), dotted(("models", name)),
                            f"the same model as `models.{other}` (line "
                            f"{loaded.line_of('models', other)}): {model_ids[name]} with the same "
                            "weights and settings. Its tasks would be the other's, and its name "
                            "would vanish from results and report; remove one entry, or use "
                            "one name in both places")
        first_of[identity] = name


#: Stands for the params while the JSON around them is made (no identity holds a NUL).
_PARAMS_MARK = "\x00params\x00"


@dataclass
class _TaskMaker:
    """What the tasks of one study entry on one model share: every key part but the params,
    and the canonical JSON around them. A task then costs one dump of its params and one hash,
    byte-identical to hashing its whole parts dict (``task_key``)."""

    kind_name: str
    model: str | None
    model_id: str | None
    dataset: str | None
    dataset_id: str | None
    upstream: list[str]
    seed: int
    entry: int | None
    dataset_id_of: Any
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.kind = get_kind(self.kind_name)
        #: the key parts with the params' place held by the mark, the order kept
        self.template = self.parts(_PARAMS_MARK)
        mark = canonical_json(_PARAMS_MARK)
        head, found, tail = canonical_json(self.template).partition(mark)
        self.around = (head, tail) if found and mark not in tail else None

    def parts(self, params_json: Any) -> dict[str, Any]:
        """The key parts of the task with these params (dumped, dataset params resolved)."""
        parts = {
            "kind": self.kind_name,
            "kind_version": self.kind.version,
            "params": params_json,
            "model_id": self.model_id,
            "dataset_id": self.dataset_id,
            "upstream": sorted(self.upstream),
            "seed": self.seed,
        }
        if precision_key(self.kind, self.model, self.precision):
            parts["precision"] = self.precision
        return parts

    def task(self, params: KindParams) -> Task:
        """The task of these (validated) params, with its key."""
        params_json = self.kind.key_params(params)
        for param in self.kind.dataset_params:  # hash what a dataset param names, not its name
            if params_json.get(param) is not None:
                params_json[param] = {"dataset": self.dataset_id_of(params_json[param])}
        # ``parts(params_json)``, from the template: the same keys in the same order
        parts = {**self.template, "params": params_json, "upstream": sorted(self.upstream)}
        if self.around is None:  # an identity that holds the mark itself: dump it all
            key = task_key(parts)
        else:
            text = self.around[0] + _canonical_tree(params_json) + self.around[1]
            key = hashlib.sha256(text.encode()).hexdigest()
        # by position, in the fields' order (keywords cost 10,000 tasks 8 ms)
        return Task(key, self.kind_name, params, parts, self.model, self.dataset,
                    list(self.upstream), self.seed, self.entry)


def precision_key(kind: Any, model: str | None, precision: str) -> bool:
    """Whether ``precision`` joins a task's key parts: not fp32 (today's keys, byte for byte),
    and only for a task that runs forwards of its model and does not train it (training keeps
    fp32, so its weights and every key downstream stay shared). tf32 counts even on a CPU,
    where it equals fp32: a key never depends on the machine (Ray workers may hold GPUs the
    planner lacks), so a tf32 result is always the one asked for."""
    return precision != "fp32" and model is not None and not kind.trains_model


# --------------------------------------------------------------------------- cache state


@dataclass(frozen=True)
class TaskStatus:
    """A task's state for the plan: ``cached``, ``to run``, or ``to run`` with a reason."""

    cached: bool
    reason: str  # "cached", "new", "failed", "running", "artifacts missing", ...


_CACHED = TaskStatus(True, "cached")
_NEW = TaskStatus(False, "new")
_MISSING = TaskStatus(False, "artifacts missing")


@gc_paused()
def cache_status(plan: Plan, engine: Any, store: Any) -> dict[str, TaskStatus]:
    """Which tasks are done with intact artifacts (cached) and why the others must run: one
    query per table (``db.task_states``) and one ``stat`` per artifact, nothing per task."""
    from runner.db import task_states

    return _status_of(plan, task_states(engine, [t.key for t in plan.tasks]), store)


@gc_paused()
def quick_cache_status(plan: Plan, db_option: str | None,
                       store: Any) -> dict[str, TaskStatus] | None:
    """``cache_status`` in the database ``db_option`` names, read without SQLAlchemy when it is
    a plain SQLite file of this code's schema (``runner.dbread``): a cached rerun answers
    without importing it. None when that cannot tell; then connect, and ask ``cache_status``."""
    from runner.dbread import sqlite_task_states

    states = sqlite_task_states(db_option, [t.key for t in plan.tasks])
    return None if states is None else _status_of(plan, states, store)


def _status_of(plan: Plan, states: dict[str, Any], store: Any) -> dict[str, TaskStatus]:
    """Each task's status from its row's state (``db.TaskState``) and its artifact files."""
    intact = store.intact_check()
    out: dict[str, TaskStatus] = {}
    for t in plan.tasks:
        s = states.get(t.key)
        if s is None:
            out[t.key] = _NEW
        elif s.status != "done":
            out[t.key] = TaskStatus(False, s.status)
        elif all(intact(path, size) for _, path, size in s.artifacts):
            out[t.key] = _CACHED
        else:
            out[t.key] = _MISSING
    return out


# ---------------------------------------------------------------------------------- why


def explain(task: Task, candidates: list[dict[str, Any]]) -> str:
    """What differs between a task's key parts and the nearest cached task's (``vitstudy why``)."""
    if not candidates:
        return f"no cached {task.kind} task for model {task.model} to compare with"
    best_key, best_diff = None, None
    for cand in candidates:
        diff = _diff(cand["parts"], task.key_parts)
        if best_diff is None or len(diff) < len(best_diff):
            best_key, best_diff = cand["key"], diff
    if not best_diff:
        return f"same key parts as {best_key[:10]} (it is cached under another key?)"
    lines = [f"nearest cached: {best_key[:10]}; differs in:"]
    lines += [f"  {path}: {_short(old)} -> {_short(new)}" for path, old, new in best_diff]
    return "\n".join(lines)


def _diff(old: Any, new: Any, at: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{at}.{k}" if at else k)
        return out
    return [] if old == new else [(at, old, new)]


def _short(v: Any, width: int = 40) -> str:
    text = v if isinstance(v, str) else canonical_json(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary(value: Any, dumped: Any) -> str:
    """A param's value as ``params_summary`` shows it: its own ``summary()`` where it has one
    (a feature range: ``0..63``), else its JSON, short."""
    summary = getattr(value, "summary", None)
    return summary() if callable(summary) else _short(dumped)


def _has_defaults(params: KindParams) -> bool:
    return all(not f.is_required() for f in type(params).model_fields.values())


# --------------------------------------------------------------------------- plan checks


def check_tasks(plan: Plan, tasks: list[Task]) -> None:
    """Plan-time checks that need the data and the models (imports torch): datasets exist and
    hold labelled images (with boxes where a kind reads them), models build on the meta device
    with their weights at hand, and each kind accepts its params for its model (layers,
    features, CLS token). Raises ``SpecError`` pointing at the entry at fault."""
    _check_datasets(plan, tasks)
    check_params_fit_models(plan, tasks, _inspect_models(plan, tasks))


def check_params_fit_models(plan: Plan, tasks: list[Task], infos: dict[str, Any]) -> None:
    """Each kind accepts its params for its model (layers, features, CLS token), given each
    used model's sites (``infos``, by model name); ``SpecError`` at the entry at fault."""
    for t in tasks:
        if t.model is None:
            continue
        try:
            get_kind(t.kind).check(t.params, infos[t.model])
        except PlanError as e:  # ModelError too: a site or feature the model lacks
            key = ("studies", t.entry) if t.entry is not None else ("models", t.model)
            raise _at(plan, key, f"{t.kind} on model {t.model!r}: {e}") from None


def _at(plan: Plan, key: tuple, message: str) -> SpecError:
    """A ``SpecError`` at ``key`` of the plan's study file."""
    return SpecError(plan.study.path, plan.study.line_of(*key), dotted(key), message)


def _check_datasets(plan: Plan, tasks: list[Task]) -> None:
    """Every dataset a task reads can be opened as declared; box-reading kinds get boxes."""
    from runner.data import check_dataset

    datasets = plan.study.study.datasets
    needed = {t.dataset for t in tasks if t.dataset}
    for t in tasks:
        kind = get_kind(t.kind)
        needed.update(getattr(t.params, p) for p in kind.dataset_params
                      if getattr(t.params, p, None))
        spec = datasets.get(t.dataset) if t.dataset else None
        if kind.needs_boxes and isinstance(spec, ImagenetDataset) and spec.boxes is None:
            key = ("studies", t.entry, "dataset") if t.entry is not None else ("datasets",)
            raise _at(plan, key, f"kind {t.kind!r} reads object boxes, and dataset "
                      f"{t.dataset!r} has none: give it a `boxes:` folder of PASCAL-VOC XML "
                      "files, or use another dataset")
    for name in sorted(needed):
        try:
            check_dataset(name, datasets[name])
        except DatasetError as e:
            raise _at(plan, ("datasets", name), str(e)) from None
    _check_kind_datasets(plan, tasks)


def _check_kind_datasets(plan: Plan, tasks: list[Task]) -> None:
    """A kind's own demands on the dataset a task reads (``Kind.check_dataset``: concepts
    needs WordNet class ids), once per (kind, dataset), reported at the entry's dataset."""
    datasets = plan.study.study.datasets
    seen: set[tuple[str, str]] = set()
    for t in tasks:
        if not t.dataset or (t.kind, t.dataset) in seen:
            continue
        seen.add((t.kind, t.dataset))
        try:
            get_kind(t.kind).check_dataset(t.params, t.dataset, datasets[t.dataset])
        except DatasetError as e:
            key = ("studies", t.entry, "dataset") if t.entry is not None else ("datasets",)
            raise _at(plan, key, str(e)) from None


def _inspect_models(plan: Plan, tasks: list[Task]) -> dict[str, Any]:
    """Each used model's sites (built on the meta device) after checking its weights exist."""
    from runner.models import check_weights, inspect_model

    loaded = plan.study
    infos: dict[str, Any] = {}
    for name in sorted({t.model for t in tasks if t.model}):
        spec = loaded.study.models[name]
        try:
            infos[name] = inspect_model(spec, base_dir=loaded.base_dir, shapes_only=True)
            check_weights(spec, base_dir=loaded.base_dir)
        except ModelError as e:
            key = ("models", name) + ((e.field,) if e.field in spec.model_fields_set else ())
            raise _at(plan, key, str(e)) from None
    return infos
