"""The local executor: claim, run and record a plan's tasks on this machine.

Tasks are grouped by (model, dataset): a model is built once per group and evaluation kinds
of the group share one fused pass over the data. Every task is claimed in the database before
it runs (two runners never run the same task), its artifacts are durable before its rows are
committed, and a task that raises is marked ``failed`` while the others go on. Claims are
made a bounded batch at a time (``work_batches``), so any number of runners share a study; a
runner waits for the tasks other live runners hold and takes over those whose runner died
(``Runner.orphaned_upstream``, ``Runner.settle_elsewhere``). SIGTERM stops a run as Ctrl-C
does (``runner.execute.signals``): the tasks in flight become ``interrupted``.

The pieces are shared with the Ray executor (``runner.execute.ray``): ``run_plan`` (the frame
of a run), ``Runner`` (claiming, recording, display: the driver's side), ``GroupRunner``
(running one group of claimed tasks: the worker's side) and ``task_groups``.
"""

from __future__ import annotations

import contextlib
import errno
import random
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from runner import db
from runner.execute.display import Display
from runner.execute.fused import pass_runner, pass_settings, run_fused
from runner.execute.integrity import checked_path, corrupted_upstream, task_sink
from runner.execute.provenance import (
    device_label,
    probe_image_bytes,
    provenance,
    resolve_batch_size,
    resolve_device,
    resolve_workers,
)
from runner.execute.signals import Interrupted, signals_as_interrupts
from runner.kinds import get_kind
from runner.kinds.base import ArtifactSink, Progress, TaskContext, TaskResult, Upstream, Work
from runner.plan import Plan, Task, cache_status
from runner.store import Store

if TYPE_CHECKING:  # torch is imported when a model or dataset is first opened
    from runner.data.base import ImageDataset
    from runner.models.base import LoadedModel
    from runner.schema import ModelSpec

#: How often a waiting runner polls for an upstream task another runner holds.
POLL_S = 1.0
#: At most this many fusable tasks of one (model, dataset) are claimed (and run in one pass)
#: at a time, so that any number of runners share a large study.
CLAIM_BATCH = 16


@dataclass
class RunOptions:
    """How to run; none of this is part of any task key (the precision, which can be, is the
    plan's: ``Plan.precision``)."""

    device: str = "auto"
    batch_size: int | str = 64  # or "auto": from free device memory (resolve_batch_size)
    workers: int | None = None  # None: 0 on a CPU, several on a GPU (resolve_workers)
    prefetch: int = 2  # batches each decode worker keeps ready (DataLoader prefetch_factor)
    command: str = "run"
    claim_batch: int = CLAIM_BATCH  # fusable tasks claimed at once (see ``work_batches``)


@dataclass
class RunSummary:
    """What a run did: its tasks done and failed here, done or failed under other runners."""

    run_id: int | None
    to_run: int
    cached: int
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # done by another runner meanwhile
    failed_elsewhere: list[str] = field(default_factory=list)  # failed under another runner
    released: int = 0  # tasks in flight handed back (``interrupted``) when the run stopped

    @property
    def exit_code(self) -> int:
        """0 only when every task of the plan is done (here, cached, or by another runner)."""
        return 1 if self.failed or self.failed_elsewhere else 0


def execute(plan: Plan, engine: Engine, store: Store, options: RunOptions,
            display: Display) -> RunSummary:
    """Run every task of ``plan`` that is not cached; return what happened."""
    return run_plan(plan, engine, store, options, display, Runner)


def run_plan(plan: Plan, engine: Engine, store: Store, options: RunOptions, display: Display,
             runner_type: type[Runner], **runner_args: Any) -> RunSummary:
    """What every executor does around its runner: skip cached tasks, record the run, keep its
    heartbeat, hand claims back on interrupt, close the display."""
    status = cache_status(plan, engine, store)
    if corrupted_upstream(plan, engine, store, status):  # those rerun, with their dependants
        status = cache_status(plan, engine, store)
    todo = [t for t in plan.tasks if not status[t.key].cached]
    summary = RunSummary(None, len(todo), len(plan.tasks) - len(todo))
    display.start(len(todo), summary.cached)
    if not todo:
        display.close()
        return summary
    device = runner_type.resolve_device(options)
    with signals_as_interrupts():  # SIGTERM as SIGINT: Interrupted, tasks handed back
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
        except KeyboardInterrupt as e:
            outcome = "interrupted"
            raise _interrupted(e, summary) from None
        finally:
            summary.released = runner.release_claims()
            db.end_run(engine, run_id, outcome)
            display.close()
    return summary


def _interrupted(error: KeyboardInterrupt, summary: RunSummary) -> Interrupted:
    """``error`` as an ``Interrupted`` (a plain Ctrl-C is SIGINT) carrying the run's summary."""
    stopped = error if isinstance(error, Interrupted) else Interrupted()
    stopped.summary = summary
    return stopped


@contextlib.contextmanager
def _heartbeat(engine: Engine, run_id: int) -> Iterator[None]:
    """Keep the run's heartbeat fresh (six beats per lease) so runners on other hosts see it
    alive."""
    stop = threading.Event()
    every_s = db.lease_seconds() / 6

    def beat() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):
                db.heartbeat(engine, run_id)

    thread = threading.Thread(target=beat, daemon=True, name="vitstudy-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()


def task_groups(todo: list[Task]) -> list[list[Task]]:
    """The order of work: each task that trains a model alone first (others wait for its
    weights), then one group per (model, dataset)."""
    trains = [t for t in todo if get_kind(t.kind).trains_model]
    groups: dict[tuple, list[Task]] = {}
    for task in todo:
        if task not in trains:
            groups.setdefault((task.model, task.dataset), []).append(task)
    return [[t] for t in trains] + list(groups.values())


def work_batches(todo: list[Task], size: int = CLAIM_BATCH) -> list[list[Task]]:
    """The order of work in batches, each claimed right before it runs: the ``task_groups``
    order, a group's fusable tasks ``size`` at a time (one pass each), its other tasks alone."""
    batches: list[list[Task]] = []
    for group in task_groups(todo):
        fusable = [t for t in group if get_kind(t.kind).fusable]
        batches += [fusable[i : i + size] for i in range(0, len(fusable), max(1, size))]
        batches += [[t] for t in group if not get_kind(t.kind).fusable]
    return batches


#: ``upstream_blocker`` says this while an upstream task is still running.
WAIT = "wait"


def upstream_blocker(engine: Engine, task: Task, claimed: Collection[str],
                     running_here: Collection[str] = ()) -> str | None:
    """None when every upstream task of ``task`` is done; ``WAIT`` while one is running here,
    under another runner, or is to be taken over (``Runner.orphaned_upstream``: its runner
    died or handed it back); else why ``task`` cannot run (an upstream task failed).
    """
    for up in task.upstream:
        if up in running_here:
            return WAIT
        state = db.task_status(engine, up)
        if state == "done":
            continue
        if state == "failed" or up in claimed:
            return f"upstream task {up[:10]} is {state or 'missing'}"
        return WAIT
    return None


class Outcomes(Protocol):
    """Where a ``GroupRunner`` reports what its tasks do."""

    def started(self, label: str) -> None: ...

    def progress(self, done: int, total: int | None, work: Work | None = None) -> None: ...

    def message(self, text: str) -> None: ...

    def succeeded(self, task: Task, result: TaskResult, seconds: float) -> None: ...

    def failed(self, task: Task, error: str, info: dict[str, Any],
               seconds: float | None = None) -> None: ...


class GroupRunner:
    """Runs groups of claimed tasks on one device and reports each outcome; no database.

    A group shares one model (built once) and, for fusable kinds, one pass over the data.
    ``upstream_artifacts(key)`` gives an upstream task's artifacts (role -> store path);
    ``sink_for(task)`` where a task's artifacts go (default: straight into the store).
    """

    def __init__(self, plan: Plan, store: Store, options: RunOptions, device: str,
                 upstream_artifacts: Callable[[str], dict[str, str]],
                 sink_for: Callable[[Task], ArtifactSink] | None = None) -> None:
        self.plan, self.store, self.options, self.device = plan, store, options, device
        self.sink_for = sink_for or (lambda task: store)
        self._verified: dict[str, Path] = {}  # store path -> absolute path, sha256 checked
        self.workers = resolve_workers(options.workers, device)
        self.upstream_artifacts = upstream_artifacts
        self.study = plan.study.study
        self.base_dir = plan.study.base_dir
        self.by_key = plan.by_key()
        self._datasets: dict[str, ImageDataset] = {}
        self._batch_sizes: dict[str | None, int] = {}  # model -> batch size (``auto`` probed)

    def run_group(self, tasks: list[Task], report: Outcomes) -> None:
        """Run ``tasks`` (already claimed), loading their model once, fusing what can be."""
        model_cache: dict[str, LoadedModel] = {}
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

    def _context(self, task: Task, model_cache: dict[str, LoadedModel],
                 report: Outcomes) -> TaskContext:
        spec = self.study.models.get(task.model) if task.model else None
        upstream = {self.by_key[k].kind: self._upstream(k) for k in task.upstream}
        label = task_label(task)

        def load_model() -> LoadedModel:
            if "model" not in model_cache:
                model_cache["model"] = self._load_model(task, spec, upstream)
            return model_cache["model"]

        ctx = TaskContext(
            key=task.key, kind=task.kind, params=task.params, seed=task.seed,
            sink=self.sink_for(task),
            device=self.device, batch_size=self._batch_size(task.model, load_model),
            workers=self.workers, prefetch=self.options.prefetch,
            precision=self.plan.precision, model_name=task.model, dataset_name=task.dataset,
            upstream=upstream,
            progress=Progress(report.progress),
            load_model=load_model if spec is not None else None,
            load_dataset=(lambda: self._dataset(task.dataset)) if task.dataset else None,
            open_dataset=self._dataset,
            log=lambda text: report.message(f"{label}: {text}"),
        )
        ctx.run_pass = pass_runner(ctx)
        if self.options.batch_size == "auto":  # recorded with the task (``record_success``)
            ctx.result.info["batch_size"] = ctx.batch_size
        return ctx

    def _batch_size(self, model: str | None, load_model: Callable[[], LoadedModel]) -> int:
        """The batch size of a task on ``model``: as asked; ``auto`` is probed once per model
        on a GPU (``resolve_batch_size``), 64 elsewhere and for a task without a model."""
        if model not in self._batch_sizes:
            self._batch_sizes[model] = resolve_batch_size(
                self.options.batch_size, self.device if model else "cpu",
                lambda: probe_image_bytes(load_model(), self.device, self.plan.precision))
        return self._batch_sizes[model]

    def _load_model(self, task: Task, spec: ModelSpec,
                    upstream: dict[str, Upstream]) -> LoadedModel:
        from runner.models import build_untrained, load_model

        if get_kind(task.kind).trains_model:
            return build_untrained(spec).to(self.device)
        trained = [u for u in upstream.values() if get_kind(u.kind).trains_model]
        weights = trained[0].artifacts["checkpoint"] if trained else None
        return load_model(spec, weights=weights, device=self.device, base_dir=self.base_dir)

    def _dataset(self, name: str) -> ImageDataset:
        from runner.data import open_dataset

        if name not in self._datasets:
            self._datasets[name] = open_dataset(name, self.study.datasets[name])
        return self._datasets[name]

    def _upstream(self, key: str) -> Upstream:
        """An upstream task's artifacts, each checked against its sha256 (once per run)."""
        kind = self.by_key[key].kind
        files = {}
        for role, relpath in self.upstream_artifacts(key).items():
            if relpath not in self._verified:
                what = f"upstream {kind} task {key[:10]}, {role}"
                self._verified[relpath] = checked_path(self.store, relpath, what)
            files[role] = self._verified[relpath]
        return Upstream(key, kind, files)

    def _run_one(self, task: Task, model_cache: dict[str, LoadedModel], report: Outcomes) -> None:
        report.started(task_label(task))
        started = time.monotonic()
        try:
            ctx = self._context(task, model_cache, report)
            _seed_everything(task.seed)
            get_kind(task.kind).run(ctx)
        except Exception as e:  # noqa: BLE001 - a failing task must not stop the others
            stop_if_fatal(e)
            report.failed(task, _describe(e), _info(locals().get("ctx")),
                          time.monotonic() - started)
            return
        report.succeeded(task, ctx.result, time.monotonic() - started)

    def _run_fused(self, tasks: list[Task], model_cache: dict[str, LoadedModel],
                   report: Outcomes) -> None:
        """Evaluation kinds of one (model, dataset) in one pass over the data."""
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
                stop_if_fatal(e)
                report.failed(task, _describe(e), {})
        if not evaluators:
            return
        first = contexts[evaluators[0][0].key]
        try:
            _seed_everything(evaluators[0][0].seed)
            errors = run_fused([ev for _, ev in evaluators], first.model, first.dataset,
                               progress=first.progress, **pass_settings(first))
        except Exception as e:  # noqa: BLE001 - the shared loop broke: every task fails
            stop_if_fatal(e)
            for task, _ in evaluators:
                report.failed(task, _describe(e), {})
            return
        seconds = time.monotonic() - started
        for task, _ in evaluators:
            error = errors.get(task.key) if isinstance(errors, dict) else None
            if error is not None:
                stop_if_fatal(error)
                report.failed(task, _describe(error), _info(contexts[task.key]),
                              seconds / len(evaluators))
            else:
                report.succeeded(task, contexts[task.key].result, seconds / len(evaluators))


class Runner:
    """Claims a plan's tasks, records their outcomes in the database, shows progress; ``run``
    executes the groups here, in order (the local executor). Other executors override ``run``.
    """

    def __init__(self, plan: Plan, engine: Engine, store: Store, options: RunOptions,
                 display: Display, device: str, run_id: int, summary: RunSummary) -> None:
        self.plan, self.engine, self.store, self.options = plan, engine, store, options
        self.display, self.device, self.run_id, self.summary = display, device, run_id, summary
        self.study = plan.study.study
        self.by_key = plan.by_key()
        self.claimed: set[str] = set()
        self.redo_done: set[str] = set()
        self.held_elsewhere: dict[str, Task] = {}  # claims refused: done or held by another run

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
        """Run ``todo`` here one claimed batch at a time, then wait for the tasks other runners
        held until they are done, taking over those whose runner died or handed them back."""
        self.redo_done = redo_done
        self.groups = GroupRunner(self.plan, self.store, self.options, self.device,
                                  lambda key: db.artifact_paths(self.engine, key),
                                  sink_for=task_sink(self.engine, self.store, self.run_id))
        for batch in work_batches(todo, self.options.claim_batch):
            self._run_batch(batch)
        if self.held_elsewhere:
            self.display.message(f"waiting for {len(self.held_elsewhere)} task(s) other "
                                 "runners hold (a dead runner's are taken over)")
        while self.held_elsewhere:
            orphans = self.settle_elsewhere()
            for batch in work_batches(orphans, self.options.claim_batch):
                self._run_batch(batch)
            if self.held_elsewhere and not orphans:
                time.sleep(POLL_S)

    def _run_batch(self, batch: list[Task]) -> None:
        ready = [t for t in batch if self._upstream_ready(t)]
        claimed = self.claim_batch(ready)
        if claimed:
            self.groups.run_group(claimed, self)

    def _upstream_ready(self, task: Task) -> bool:
        """Wait for upstream tasks held by other live runners, running here those whose runner
        died; False (``task`` failed) if one failed."""
        while True:
            for upstream in self.orphaned_upstream([task]):
                self._run_batch([upstream])
            blocker = upstream_blocker(self.engine, task, self.claimed)
            if blocker != WAIT:
                break
            time.sleep(POLL_S)
        if blocker is not None:
            self.record_failure(task, blocker, claim=True)
            return False
        return True

    # ---------------------------------------------------------------------- claiming

    def claim_batch(self, tasks: list[Task]) -> list[Task]:
        """Claim ``tasks`` right before they run, looking at their cache status again: a task
        done meanwhile by another runner is skipped, one whose artifacts are missing is redone.
        Returns the tasks claimed."""
        if not tasks:
            return []
        status = cache_status(replace(self.plan, tasks=tasks), self.engine, self.store)
        claimed = []
        for task in tasks:
            if status[task.key].cached:
                self.summary.elsewhere.append(task.key)
            elif self.claim(task, redo_done=status[task.key].reason == "artifacts missing"):
                claimed.append(task)
        return claimed

    def claim(self, task: Task, *, redo_done: bool | None = None) -> bool:
        """Take ``task`` for this run in the database; False (and said) if it is done or
        another live run holds it: then it is waited for at the end (``settle_elsewhere``)."""
        if redo_done is None:
            redo_done = task.key in self.redo_done
        ok = db.claim_task(self.engine, task.row(self.study.name), self.run_id,
                           redo_done=redo_done)
        if ok:
            self.claimed.add(task.key)
            self.held_elsewhere.pop(task.key, None)
        else:
            self.held_elsewhere[task.key] = task
            self.display.message(f"{task_label(task)}: done or running elsewhere")
        return ok

    def orphaned_upstream(self, tasks: list[Task]) -> list[Task]:
        """Upstream tasks of ``tasks`` (not among them) that no live run holds and that are
        neither done nor failed (their runner died, or handed them back): to run here."""
        skip = self.claimed | {t.key for t in tasks}
        keys = dict.fromkeys(up for t in tasks for up in t.upstream if up not in skip)
        orphans = []
        for key in keys:
            status, alive = db.task_holder(self.engine, key)
            if not alive and status not in ("done", "failed"):
                self._say_taking_over(self.by_key[key], status)
                orphans.append(self.by_key[key])
        return orphans

    def settle_elsewhere(self) -> list[Task]:
        """Look again at the tasks other runners held: done or failed there, they are counted;
        still held by a live run, waited for; else (the run died or handed them back) they
        are returned, to run here."""
        orphans = []
        for key, task in list(self.held_elsewhere.items()):
            status, alive = db.task_holder(self.engine, key)
            if alive:
                continue
            del self.held_elsewhere[key]
            if status == "done":
                self.summary.elsewhere.append(key)
            elif status == "failed":
                self.summary.failed_elsewhere.append(key)
                self.display.message(f"{task_label(task)}: failed under another runner")
            else:
                self._say_taking_over(task, status)
                orphans.append(task)
        return orphans

    def _say_taking_over(self, task: Task, status: str | None) -> None:
        self.display.message(f"{task_label(task)}: {status or 'missing'} and no live runner "
                             "holds it; taking it over")

    def release_claims(self) -> int:
        """When the run stops: hand back every task still ``running`` under it (they become
        ``interrupted``; any runner takes them). Returns how many."""
        self.claimed.clear()
        try:
            return db.release_tasks(self.engine, self.run_id)
        except Exception:  # noqa: BLE001 - a dead run's tasks are taken over anyway
            return 0

    # --------------------------------------------------------------------- recording

    def record_success(self, task: Task, result: TaskResult, seconds: float, *,
                       device: str | None = None, host: str | None = None) -> None:
        """Commit a task's rows (its artifacts are already in the store) and show it done."""
        info = dict(result.info, batch_size=result.info.get("batch_size",
                                                            self.options.batch_size),
                    workers=resolve_workers(self.options.workers, device or self.device),
                    precision=self.plan.precision)
        db.finish_task(self.engine, task.key,
                       metric_rows=[asdict(m) for m in result.metrics],
                       artifact_rows=[asdict(a) for a in result.artifacts],
                       info=info, device=device or self.device, host=host, seconds=seconds)
        self.claimed.discard(task.key)
        self.summary.done.append(task.key)
        self.display.task_done(task_label(task), seconds)
        for name, what in (("skipped", "image(s) skipped"), ("no_boxes", "image(s) no_boxes"),
                           ("bad_box_files", "unreadable box file(s) skipped")):
            if info.get(name):
                self.display.message(f"{task_label(task)}: {info[name]} {what}")

    def record_failure(self, task: Task, error: str, *, info: dict | None = None,
                       claim: bool = False, host: str | None = None,
                       seconds: float | None = None) -> None:
        """Mark a task failed with its error and show it (``claim``: take it first).
        ``seconds``: how long it ran (None: it never started)."""
        if claim and not self.claim(task):
            return
        db.fail_task(self.engine, task.key, error, info, host=host, seconds=seconds)
        self.claimed.discard(task.key)
        self.summary.failed.append(task.key)
        self.display.task_failed(task_label(task), error.splitlines()[0])

    # -------------------------------------------------- Outcomes, for the GroupRunner here

    def started(self, label: str) -> None:
        self.display.task_started(label)

    def progress(self, done: int, total: int | None, work: Work | None = None) -> None:
        self.display.task_progress(done, total, work)

    def message(self, text: str) -> None:
        self.display.message(text)

    def succeeded(self, task: Task, result: TaskResult, seconds: float) -> None:
        self.record_success(task, result, seconds)

    def failed(self, task: Task, error: str, info: dict[str, Any],
               seconds: float | None = None) -> None:
        self.record_failure(task, error, info=info, seconds=seconds)


def task_label(task: Task) -> str:
    """How a task is named in progress lines: kind / model / short key."""
    return " / ".join([task.kind, task.model or "-", task.short])


#: File-system faults that would fail every later task too: the run stops at the first.
FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def stop_if_fatal(error: BaseException) -> None:
    """Re-raise a disk-full or read-only-file-system error instead of failing one task with it:
    the run stops (its task in flight becomes ``interrupted``) and the CLI says what to do."""
    if isinstance(error, OSError) and error.errno in FATAL_ERRNOS:
        raise error


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
