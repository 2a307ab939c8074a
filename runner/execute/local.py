"""The local executor: claim, run and record a plan's tasks on this machine.

Tasks are grouped by (model, dataset): a model is built once per group and evaluation kinds
of the group share one fused pass over the data. Every task is claimed in the database before
it runs (two runners never run the same task), its artifacts are durable before its rows are
committed, and a task that raises is marked ``failed`` while the others go on.

The pieces are shared with the Ray executor (``runner.execute.ray``): ``run_plan`` (the frame
of a run), ``Runner`` (claiming, recording, display: the driver's side), ``GroupRunner``
(running one group of claimed tasks: the worker's side) and ``task_groups``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from runner import db
from runner.execute.display import Display
from runner.execute.provenance import (
    device_label,
    provenance,
    resolve_device,
    resolve_workers,
)
from runner.kinds import get_kind
from runner.kinds.base import Progress, TaskContext, TaskResult, Upstream
from runner.plan import Plan, Task, cache_status
from runner.store import Store

#: How often a waiting runner polls for an upstream task another runner holds.
POLL_S = 1.0
HEARTBEAT_S = 30.0


@dataclass
class RunOptions:
    """How to run; none of this is part of any task key."""

    device: str = "auto"
    batch_size: int = 64
    workers: int | None = None  # None: 0 on a CPU, several on a GPU (resolve_workers)
    command: str = "run"


@dataclass
class RunSummary:
    run_id: int | None
    to_run: int
    cached: int
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # done by another runner meanwhile

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def execute(plan: Plan, engine: Any, store: Store, options: RunOptions,
            display: Display) -> RunSummary:
    """Run every task of ``plan`` that is not cached; return what happened."""
    return run_plan(plan, engine, store, options, display, Runner)


def run_plan(plan: Plan, engine: Any, store: Store, options: RunOptions, display: Display,
             runner_type: type[Runner], **runner_args: Any) -> RunSummary:
    """What every executor does around its runner: skip cached tasks, record the run, keep its
    heartbeat, hand claims back on interrupt, close the display."""
    status = cache_status(plan, engine, store)
    todo = [t for t in plan.tasks if not status[t.key].cached]
    summary = RunSummary(None, len(todo), len(plan.tasks) - len(todo))
    display.start(len(todo), summary.cached)
    if not todo:
        display.close()
        return summary
    device = runner_type.resolve_device(options)
    run_id = db.start_run(engine, study=plan.study.name, command=options.command,
                          provenance=provenance(runner_type.device_label(device)))
    summary.run_id = run_id
    runner = runner_type(plan, engine, store, options, display, device, run_id, summary,
                         **runner_args)
    outcome = "failed"
    try:
        with _heartbeat(engine, run_id):
            runner.run(todo, {k for k, s in status.items() if s.reason == "artifacts missing"})
        outcome = "failed" if summary.failed else "done"
    except KeyboardInterrupt:
        outcome = "interrupted"
        runner.release_claims()
        raise
    finally:
        db.end_run(engine, run_id, outcome)
        display.close()
    return summary


@contextlib.contextmanager
def _heartbeat(engine: Any, run_id: int) -> Iterator[None]:
    """Keep the run's heartbeat fresh so runners on other hosts see it alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                db.heartbeat(engine, run_id)

    thread = threading.Thread(target=beat, daemon=True, name="vitstudy-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()


def task_groups(todo: list[Task]) -> list[list[Task]]:
    """The order of work: each train task alone first, then one group per (model, dataset)."""
    groups: dict[tuple, list[Task]] = {}
    for task in todo:
        if task.kind != "train":
            groups.setdefault((task.model, task.dataset), []).append(task)
    return [[t] for t in todo if t.kind == "train"] + list(groups.values())


#: ``upstream_blocker`` says this while an upstream task is still running.
WAIT = "wait"


def upstream_blocker(engine: Any, task: Task, claimed: Collection[str],
                     running_here: Collection[str] = ()) -> str | None:
    """None when every upstream task of ``task`` is done; ``WAIT`` while one is running here or
    under another runner; else why ``task`` cannot run (an upstream task failed or is missing).
    """
    for up in task.upstream:
        if up in running_here:
            return WAIT
        state = db.task_status(engine, up)
        if state == "done":
            continue
        if state == "running" and up not in claimed:
            return WAIT  # another runner is training it
        return f"upstream task {up[:10]} is {state or 'missing'}"
    return None


class Outcomes(Protocol):
    """Where a ``GroupRunner`` reports what its tasks do."""

    def started(self, label: str) -> None: ...

    def progress(self, done: int, total: int | None) -> None: ...

    def message(self, text: str) -> None: ...

    def succeeded(self, task: Task, result: TaskResult, seconds: float) -> None: ...

    def failed(self, task: Task, error: str, info: dict[str, Any]) -> None: ...


class GroupRunner:
    """Runs groups of claimed tasks on one device and reports each outcome; no database.

    A group shares one model (built once) and, for fusable kinds, one pass over the data.
    ``upstream_artifacts(key)`` gives an upstream task's artifacts (role -> store path).
    """

    def __init__(self, plan: Plan, store: Store, options: RunOptions, device: str,
                 upstream_artifacts: Callable[[str], dict[str, str]]) -> None:
        self.plan, self.store, self.options, self.device = plan, store, options, device
        self.workers = resolve_workers(options.workers, device)
        self.upstream_artifacts = upstream_artifacts
        self.study = plan.study.study
        self.base_dir = plan.study.base_dir
        self.by_key = plan.by_key()
        self._datasets: dict[str, Any] = {}

    def run_group(self, tasks: list[Task], report: Outcomes) -> None:
        """Run ``tasks`` (already claimed), loading their model once, fusing what can be."""
        model_cache: dict[str, Any] = {}
        try:
            fused = [t for t in tasks if get_kind(t.kind).fusable]
            if len(fused) > 1:
                self._run_fused(fused, model_cache, report)
            else:
                fused = []
            for task in tasks:
                if task not in fused:
                    self._run_one(task, model_cache, report)
        finally:
            model_cache.clear()
            _free_device_memory(self.device)

    def _context(self, task: Task, model_cache: dict[str, Any], report: Outcomes) -> TaskContext:
        spec = self.study.models.get(task.model) if task.model else None
        upstream = {self.by_key[k].kind: self._upstream(k) for k in task.upstream}
        label = task_label(task)

        def load_model() -> Any:
            if "model" not in model_cache:
                model_cache["model"] = self._load_model(task, spec, upstream)
            return model_cache["model"]

        return TaskContext(
            key=task.key, kind=task.kind, params=task.params, seed=task.seed, sink=self.store,
            device=self.device, batch_size=self.options.batch_size, workers=self.workers,
            model_name=task.model, dataset_name=task.dataset, upstream=upstream,
            progress=Progress(report.progress),
            load_model=load_model if spec is not None else None,
            load_dataset=(lambda: self._dataset(task.dataset)) if task.dataset else None,
            open_dataset=self._dataset,
            log=lambda text: report.message(f"{label}: {text}"),
        )

    def _load_model(self, task: Task, spec: Any, upstream: dict[str, Upstream]) -> Any:
        from runner.models import build_untrained, load_model

        if task.kind == "train":
            return build_untrained(spec).to(self.device)
        weights = upstream["train"].artifacts["checkpoint"] if "train" in upstream else None
        return load_model(spec, weights=weights, device=self.device, base_dir=self.base_dir)

    def _dataset(self, name: str) -> Any:
        from runner.data import open_dataset

        if name not in self._datasets:
            self._datasets[name] = open_dataset(name, self.study.datasets[name])
        return self._datasets[name]

    def _upstream(self, key: str) -> Upstream:
        paths = self.upstream_artifacts(key)
        return Upstream(key, self.by_key[key].kind,
                        {role: self.store.path(p).resolve() for role, p in paths.items()})

    def _run_one(self, task: Task, model_cache: dict[str, Any], report: Outcomes) -> None:
        report.started(task_label(task))
        started = time.monotonic()
        try:
            ctx = self._context(task, model_cache, report)
            _seed_everything(task.seed)
            get_kind(task.kind).run(ctx)
        except Exception as e:  # noqa: BLE001 - a failing task must not stop the others
            report.failed(task, _describe(e), _info(locals().get("ctx")))
            return
        report.succeeded(task, ctx.result, time.monotonic() - started)

    def _run_fused(self, tasks: list[Task], model_cache: dict[str, Any],
                   report: Outcomes) -> None:
        """Evaluation kinds of one (model, dataset) in one pass over the data."""
        from runner.execute.fused import run_fused

        report.started(f"fused pass: {', '.join(t.kind for t in tasks)} / {tasks[0].model}")
        started = time.monotonic()
        contexts: dict[str, TaskContext] = {}
        evaluators = []
        for task in tasks:
            try:
                ctx = self._context(task, model_cache, report)
                evaluators.append((task, get_kind(task.kind).evaluator(ctx)))
                contexts[task.key] = ctx
            except Exception as e:  # noqa: BLE001
                report.failed(task, _describe(e), {})
        if not evaluators:
            return
        first = contexts[evaluators[0][0].key]
        try:
            _seed_everything(evaluators[0][0].seed)
            errors = run_fused([ev for _, ev in evaluators], first.model, first.dataset,
                               batch_size=self.options.batch_size, device=self.device,
                               workers=self.workers, progress=first.progress)
        except Exception as e:  # noqa: BLE001 - the shared loop broke: every task fails
            for task, _ in evaluators:
                report.failed(task, _describe(e), {})
            return
        seconds = time.monotonic() - started
        for task, _ in evaluators:
            error = errors.get(task.key) if isinstance(errors, dict) else None
            if error is not None:
                report.failed(task, _describe(error), _info(contexts[task.key]))
            else:
                report.succeeded(task, contexts[task.key].result, seconds / len(evaluators))


class Runner:
    """Claims a plan's tasks, records their outcomes in the database, shows progress; ``run``
    executes the groups here, in order (the local executor). Other executors override ``run``.
    """

    def __init__(self, plan: Plan, engine: Any, store: Store, options: RunOptions,
                 display: Display, device: str, run_id: int, summary: RunSummary) -> None:
        self.plan, self.engine, self.store, self.options = plan, engine, store, options
        self.display, self.device, self.run_id, self.summary = display, device, run_id, summary
        self.study = plan.study.study
        self.claimed: set[str] = set()
        self.redo_done: set[str] = set()

    @staticmethod
    def resolve_device(options: RunOptions) -> str:
        """The device this runner's tasks run on (``auto`` resolved)."""
        return resolve_device(options.device)

    @staticmethod
    def device_label(device: str) -> str:
        """How the run's device is recorded in ``runs.device``."""
        return device_label(device)

    # ------------------------------------------------------------------------- ordering

    def run(self, todo: list[Task], redo_done: set[str]) -> None:
        self.redo_done = redo_done
        groups = GroupRunner(self.plan, self.store, self.options, self.device,
                             lambda key: db.artifact_paths(self.engine, key))
        for tasks in task_groups(todo):
            ready = [t for t in tasks if self._upstream_ready(t)]
            claimed = [t for t in ready if self.claim(t)]
            if claimed:
                groups.run_group(claimed, self)

    def _upstream_ready(self, task: Task) -> bool:
        """Wait for upstream tasks held by other runners; False if one failed."""
        while (blocker := upstream_blocker(self.engine, task, self.claimed)) == WAIT:
            time.sleep(POLL_S)
        if blocker is not None:
            self.record_failure(task, blocker, claim=True)
            return False
        return True

    # ---------------------------------------------------------------------- claiming

    def claim(self, task: Task) -> bool:
        """Take ``task`` for this run in the database; False (and said) if another has it."""
        ok = db.claim_task(self.engine, task.row(self.study.name), self.run_id,
                           redo_done=task.key in self.redo_done)
        if ok:
            self.claimed.add(task.key)
        else:
            self.summary.elsewhere.append(task.key)
            self.display.message(f"{task_label(task)}: done or running elsewhere, skipped")
        return ok

    def release_claims(self) -> None:
        """On interrupt: hand unfinished claimed tasks back so a rerun takes them."""
        for key in list(self.claimed):
            with contextlib.suppress(Exception):
                db.fail_task(self.engine, key, "interrupted")

    # --------------------------------------------------------------------- recording

    def record_success(self, task: Task, result: TaskResult, seconds: float, *,
                       device: str | None = None, host: str | None = None) -> None:
        """Commit a task's rows (its artifacts are already in the store) and show it done."""
        info = dict(result.info, batch_size=self.options.batch_size,
                    workers=resolve_workers(self.options.workers, device or self.device))
        db.finish_task(self.engine, task.key,
                       metric_rows=[asdict(m) for m in result.metrics],
                       artifact_rows=[asdict(a) for a in result.artifacts],
                       info=info, device=device or self.device, host=host)
        self.claimed.discard(task.key)
        self.summary.done.append(task.key)
        self.display.task_done(task_label(task), seconds)
        for name in ("skipped", "no_boxes"):
            if info.get(name):
                self.display.message(f"{task_label(task)}: {info[name]} image(s) {name}")

    def record_failure(self, task: Task, error: str, *, info: dict | None = None,
                       claim: bool = False, host: str | None = None) -> None:
        """Mark a task failed with its error and show it (``claim``: take it first)."""
        if claim and not self.claim(task):
            return
        db.fail_task(self.engine, task.key, error, info, host=host)
        self.claimed.discard(task.key)
        self.summary.failed.append(task.key)
        self.display.task_failed(task_label(task), error.splitlines()[0])

    # -------------------------------------------------- Outcomes, for the GroupRunner here

    def started(self, label: str) -> None:
        self.display.task_started(label)

    def progress(self, done: int, total: int | None) -> None:
        self.display.task_progress(done, total)

    def message(self, text: str) -> None:
        self.display.message(text)

    def succeeded(self, task: Task, result: TaskResult, seconds: float) -> None:
        self.record_success(task, result, seconds)

    def failed(self, task: Task, error: str, info: dict[str, Any]) -> None:
        self.record_failure(task, error, info=info)


def task_label(task: Task) -> str:
    """How a task is named in progress lines: kind / model / short key."""
    return " / ".join([task.kind, task.model or "-", task.short])


def _describe(e: BaseException) -> str:
    """The error's type and message, then the innermost frames (kept with the task)."""
    tb = traceback.extract_tb(e.__traceback__)[-4:]
    frames = "".join(traceback.format_list(tb))
    return f"{type(e).__name__}: {e}\n{frames}"


def _info(ctx: TaskContext | None) -> dict[str, Any]:
    return dict(ctx.result.info) if ctx is not None else {}


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _free_device_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
