"""The Ray executor: the same study file on a Ray cluster (``vitstudy run --executor ray``).

The driver (this process) does what the local executor does, with the same code
(``runner.execute.local.Runner``): it claims every task in the database before the task runs,
records every outcome, shows progress, and applies the failure policy. Only the running moves:
each (model, dataset) group goes to a long-lived ``GroupWorker`` actor that holds a GPU (or a
fraction of one), runs the group with the local executor's ``GroupRunner`` (model loaded once
for the group, fused pass), writes the artifacts into the shared store, and streams each task's
outcome back as soon as the task finishes. Workers never open the database: only the driver
needs to reach it, and claiming and recording stay in one place.

A task that raises is ``failed`` and not retried. A worker that dies (killed, out of memory,
node lost) has its unfinished tasks run again on a fresh worker, at most ``max_retries`` times.
The artifact store, the study folder and the datasets must be at the same path on every node.
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from runner import db
from runner.errors import UserError
from runner.execute.display import Display
from runner.execute.local import (
    POLL_S,
    WAIT,
    GroupRunner,
    Runner,
    RunOptions,
    RunSummary,
    _describe,
    run_plan,
    upstream_blocker,
    work_batches,
)
from runner.execute.signals import signals_as_interrupts
from runner.kinds.base import TaskResult, Work
from runner.plan import Plan, Task
from runner.store import Store

#: A worker streams item progress at most this often (and always a task's last item).
PROGRESS_EVERY_S = 0.5


class RayExecutorError(UserError, RuntimeError):
    """The cluster cannot run this study as asked (no Ray, no GPU, store not shared...)."""


@dataclass(frozen=True)
class RaySettings:
    """How the work is spread over the cluster; none of it is part of any task key."""

    address: str | None = None  # None: RAY_ADDRESS, a running local instance, or a new one
    actors: int | None = None  # None: as many as the cluster's GPUs (or CPUs) hold
    gpus_per_actor: float | None = None  # None: 1 if the cluster has GPUs (and not --device cpu)
    cpus_per_actor: float = 1.0
    max_retries: int = 2  # runs of a task again after its worker died


def execute_ray(plan: Plan, engine: Engine, store: Store, options: RunOptions, display: Display,
                *, address: str | None = None, actors: int | None = None,
                gpus_per_actor: float | None = None, cpus_per_actor: float = 1.0,
                max_retries: int = 2) -> RunSummary:
    """Run every task of ``plan`` that is not cached on a Ray cluster; return what happened."""
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        raise RayExecutorError("--executor ray needs Ray: pip install 'vitstudy[ray]'") from None
    settings = RaySettings(address, actors, gpus_per_actor, cpus_per_actor, max_retries)
    return run_plan(plan, engine, store, options, display, RayRunner, settings=settings)


def pool_size(resources: dict[str, float], *, gpus_per_actor: float, cpus_per_actor: float,
              groups: int, requested: int | None) -> int:
    """How many workers to start: as many as the cluster's GPUs (when workers use GPUs) or CPUs
    hold, at most ``requested``, never more than there are groups, never fewer than one."""
    if gpus_per_actor > 0:
        fit = resources.get("GPU", 0.0) / gpus_per_actor
    else:
        fit = resources.get("CPU", 0.0) / max(cpus_per_actor, 1e-9)
    size = min(int(math.floor(fit + 1e-9)), groups)
    if requested is not None:
        size = min(size, requested)
    return max(1, size)


def gpus_for(device: str, resources: dict[str, float], requested: float | None) -> float:
    """The GPU share each worker asks for: as asked, else 0 for ``cpu`` and 1 when the cluster
    has GPUs. Asking for GPUs that the cluster does not have is an error, not a hang."""
    if requested is None:
        requested = 0.0 if device == "cpu" or not resources.get("GPU") else 1.0
    if requested > 0 and not resources.get("GPU"):
        raise RayExecutorError(
            f"workers ask for {requested:g} GPU each but the Ray cluster has none; run with "
            "--device cpu, or start the cluster's nodes with GPUs")
    if device.startswith("cuda") and requested == 0:
        raise RayExecutorError(f"--device {device} but the Ray cluster has no GPU")
    return requested


# ------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class Event:
    """What a worker streams back: ``started`` (payload: label), ``progress`` ((done, total,
    work)), ``message`` (text), ``succeeded`` ((TaskResult, seconds)) or ``failed`` ((error,
    info, seconds))."""

    kind: str
    key: str | None = None
    payload: Any = None


class _Streamed:
    """The ``Outcomes`` of a worker's ``GroupRunner``: each becomes an ``Event`` in a queue."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events
        self._last_progress = 0.0

    def started(self, label: str) -> None:
        self.events.put(Event("started", payload=label))

    def progress(self, done: int, total: int | None, work: Work | None = None) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY_S or done == total:
            self._last_progress = now
            self.events.put(Event("progress", payload=(done, total, work)))

    def message(self, text: str) -> None:
        self.events.put(Event("message", payload=text))

    def succeeded(self, task: Task, result: TaskResult, seconds: float) -> None:
        self.events.put(Event("succeeded", task.key, (result, seconds)))

    def failed(self, task: Task, error: str, info: dict[str, Any],
               seconds: float | None = None) -> None:
        self.events.put(Event("failed", task.key, (error, info, seconds)))


_END = object()


class GroupWorker:
    """A Ray actor: runs the groups it is sent on its device, streaming their outcomes. Lives
    for the whole run; its datasets stay open across groups."""

    def __init__(self, plan: Plan, store_root: str, options: RunOptions) -> None:
        import ray

        self.device = "cuda" if ray.get_gpu_ids() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES
        self.host = socket.gethostname()
        self.store = Store(store_root)
        self._upstream: dict[str, dict[str, str]] = {}
        self.runner = GroupRunner(plan, self.store, options, self.device,
                                  self._upstream.__getitem__)

    def describe(self, probe: str, token: str) -> tuple[str, str]:
        """(host, device), once this node has read the driver's token in the artifact store."""
        check_store_shared(self.store, probe, token, self.host)
        return self.host, self.device

    def run_group(self, keys: list[str], upstream: dict[str, dict[str, str]]) -> Iterator[Event]:
        """Run the tasks ``keys`` (claimed by the driver) as one group, yielding their events;
        ``upstream``: the artifacts (role -> store path) of their upstream tasks."""
        self._upstream.update(upstream)
        tasks = [self.runner.by_key[k] for k in keys]
        events: queue.Queue = queue.Queue()
        broken: list[str] = []

        def work() -> None:
            try:
                self.runner.run_group(tasks, _Streamed(events))
            except BaseException as e:  # noqa: BLE001 - handed to the driver below
                broken.append(_describe(e))
            finally:
                events.put(_END)

        threading.Thread(target=work, daemon=True, name="vitstudy-group").start()
        while (event := events.get()) is not _END:
            yield event
        if broken:
            raise RuntimeError(broken[0])


def check_store_shared(store: Store, probe: str, token: str, host: str) -> None:
    """Raise unless ``store`` holds the file ``probe`` with ``token`` that the driver wrote:
    a worker that writes artifacts where the driver cannot see them would lose them."""
    try:
        seen = store.path(probe).read_text()
    except OSError:
        seen = None
    if seen != token:
        raise RayExecutorError(
            f"the artifact store {store.root} is not shared: {host} does not see the driver's "
            "files there; use a folder every node mounts at the same path (--artifacts or "
            "VITSTUDY_ARTIFACTS)")


# ------------------------------------------------------------------------- the driver


def _worker_lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors that mean a worker process or its node is gone (the task did not fail)."""
    from ray import exceptions as E

    return (E.RayActorError, E.WorkerCrashedError, E.OutOfMemoryError, E.ObjectLostError,
            E.NodeDiedError)


@dataclass
class _Slot:
    """One worker (started, or starting when not ``ready``) and the group it is running."""

    index: int
    actor: Any = None
    ready: bool = False
    host: str = "?"
    device: str = "?"
    group: list[Task] = field(default_factory=list)
    unfinished: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return self.ready and not self.group


@dataclass(frozen=True)
class _SlotEvent:
    """What the driver's queue carries: a worker's ``event``; ``ready`` (started: payload is
    (host, device)); ``end`` (group done); ``lost`` (the worker died: retry); ``broken`` (the
    worker's code raised: fail the group); ``fatal`` (a worker cannot start: stop the run)."""

    slot: int
    kind: str
    event: Event | None = None
    payload: Any = None
    error: str = ""


class RayRunner(Runner):
    """The local executor's ``Runner`` whose groups run on Ray workers, several at once."""

    def __init__(self, *args: Any, settings: RaySettings) -> None:
        super().__init__(*args)
        self.settings = settings
        self.by_key = self.plan.by_key()
        self.pending: deque[list[Task]] = deque()  # groups not yet sent to a worker, in order
        self.events: queue.Queue[_SlotEvent] = queue.Queue()
        self.slots: list[_Slot] = []
        self.deaths: dict[str, int] = {}  # task key -> how often its worker died under it
        self._shown_slot: int | None = None
        self._new_worker: Any = None  # () -> (actor, ref of its describe())

    @staticmethod
    def resolve_device(options: RunOptions) -> str:
        return options.device  # each worker resolves its own

    @staticmethod
    def device_label(device: str) -> str:
        return f"ray ({device})"

    def run(self, todo: list[Task], redo_done: set[str]) -> None:
        import ray

        self.redo_done = redo_done
        # workers cannot record each file as pending: gc removes nothing while this run lives
        db.record_pending(self.engine, self.run_id, "", db.ANY_PATH)
        self.pending = deque(work_batches(todo, self.options.claim_batch))
        # ray.init sets its own SIGTERM handler (sys.exit): SIGTERM stops the run as Ctrl-C does
        with _ray_session(self.settings.address), signals_as_interrupts(), \
                self._store_probe() as probe:
            resources = ray.cluster_resources()
            gpus = gpus_for(self.options.device, resources, self.settings.gpus_per_actor)
            size = pool_size(resources, gpus_per_actor=gpus,
                             cpus_per_actor=self.settings.cpus_per_actor,
                             groups=len(self.pending), requested=self.settings.actors)
            self.display.message(f"starting {size} Ray worker(s), {gpus:g} GPU and "
                                 f"{self.settings.cpus_per_actor:g} CPU each")
            worker = ray.remote(GroupWorker).options(num_gpus=gpus,
                                                     num_cpus=self.settings.cpus_per_actor)
            plan_ref = ray.put(self.plan)
            store_root = str(self.store.root.resolve())

            def new_worker() -> tuple[Any, Any]:
                actor = worker.remote(plan_ref, store_root, self.options)
                return actor, actor.describe.remote(*probe)

            self._new_worker = new_worker
            self.slots = [_Slot(i) for i in range(size)]
            try:
                for slot in self.slots:
                    self._start(slot)
                self._loop()
            except RayExecutorError:
                self.release_claims()
                raise
            finally:
                for slot in self.slots:
                    if slot.actor is not None:
                        with contextlib.suppress(Exception):
                            ray.kill(slot.actor)

    # ---------------------------------------------------------------------- the loop

    def _loop(self) -> None:
        """Hand ready groups to idle workers; record what comes back, until all is done
        (other runners' tasks included: a dead runner's are taken over)."""
        next_dispatch = 0.0
        while self.pending or any(s.group for s in self.slots) or self.held_elsewhere:
            if time.monotonic() >= next_dispatch:
                self._dispatch()
                next_dispatch = time.monotonic() + POLL_S
            try:
                item = self.events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._handle(item)
            if item.kind != "event":  # a worker may be free now
                next_dispatch = 0.0

    def _dispatch(self) -> None:
        """Send each group whose upstream tasks are done to an idle worker, in plan order; a
        group waiting for an upstream task (here or elsewhere) does not hold up the next."""
        waiting: deque[list[Task]] = deque()
        self._queue_orphans()
        while self.pending:
            slot = next((s for s in self.slots if s.idle), None)
            if slot is None:
                break
            tasks = self.pending.popleft()
            blockers = {t.key: upstream_blocker(self.engine, t, self.claimed, self.claimed)
                        for t in tasks}
            if WAIT in blockers.values():
                waiting.append(tasks)
                continue
            for task in tasks:
                if blockers[task.key] is not None:
                    self.record_failure(task, blockers[task.key], claim=True)
            ready = self.claim_batch([t for t in tasks if blockers[t.key] is None])
            if ready:
                self._send(slot, ready)
        self.pending.extendleft(reversed(waiting))

    def _queue_orphans(self) -> None:
        """Queue the tasks no live run holds any more: upstream tasks of queued groups go
        first, other runners' tasks whose runner died last (``Runner.settle_elsewhere``)."""
        upstream = self.orphaned_upstream([t for batch in self.pending for t in batch])
        self.pending.extendleft([t] for t in reversed(upstream))
        self.pending.extend(work_batches(self.settle_elsewhere(), self.options.claim_batch))

    def _start(self, slot: _Slot) -> None:
        """Start a worker for ``slot``; a thread reports when it is ready (or cannot start)."""
        import ray

        slot.ready = False
        slot.actor, described = self._new_worker()
        lost = _worker_lost_errors()

        def wait() -> None:
            try:
                self.events.put(_SlotEvent(slot.index, "ready", payload=ray.get(described)))
            except (RayExecutorError, *lost) as e:
                self.events.put(_SlotEvent(slot.index, "fatal", error=_cause(e)))

        threading.Thread(target=wait, daemon=True, name=f"vitstudy-ray-start-{slot.index}").start()

    def _send(self, slot: _Slot, tasks: list[Task]) -> None:
        upstream = {up: db.artifact_paths(self.engine, up) for t in tasks for up in t.upstream}
        slot.group, slot.unfinished = tasks, {t.key for t in tasks}
        stream = slot.actor.run_group.remote([t.key for t in tasks], upstream)
        threading.Thread(target=self._relay, args=(slot.index, stream), daemon=True,
                         name=f"vitstudy-ray-{slot.index}").start()

    def _relay(self, index: int, stream: Any) -> None:
        """Thread: move one group's streamed events into the driver's queue."""
        import ray

        lost = _worker_lost_errors()
        try:
            for ref in stream:
                self.events.put(_SlotEvent(index, "event", ray.get(ref)))
            self.events.put(_SlotEvent(index, "end"))
        except lost as e:
            self.events.put(_SlotEvent(index, "lost", error=_first_line(e)))
        except Exception as e:  # noqa: BLE001 - the worker's own code raised
            self.events.put(_SlotEvent(index, "broken", error=_describe(e)))

    def _handle(self, item: _SlotEvent) -> None:
        slot = self.slots[item.slot]
        if item.kind == "event":
            self._on_event(slot, item.event)
        elif item.kind == "ready":
            slot.ready = True
            slot.host, slot.device = item.payload
        elif item.kind == "lost":
            self._on_lost(slot, item.error)
        elif item.kind == "fatal":
            raise RayExecutorError(f"a Ray worker could not start: {item.error}")
        else:  # end, broken: tasks the worker did not report fail
            for task in self._take_unfinished(slot):
                self.record_failure(task, item.error or "the worker ended the group early",
                                    host=slot.host)

    def _on_event(self, slot: _Slot, event: Event) -> None:
        if event.kind == "started":
            self._shown_slot = slot.index
            self.display.task_started(event.payload)
        elif event.kind == "progress":
            if self._shown_slot == slot.index:  # the display shows one task's items
                self.display.task_progress(*event.payload)
        elif event.kind == "message":
            self.display.message(event.payload)
        else:
            task = self.by_key[event.key]
            slot.unfinished.discard(event.key)
            if event.kind == "succeeded":
                result, seconds = event.payload
                self.record_success(task, result, seconds, device=slot.device, host=slot.host)
            else:
                error, info, seconds = event.payload
                self.record_failure(task, error, info=info, host=slot.host, seconds=seconds)

    def _on_lost(self, slot: _Slot, error: str) -> None:
        """The worker died: its unfinished tasks go again on a fresh worker, a bounded number
        of times; the tasks it finished are recorded already."""
        import ray

        with contextlib.suppress(Exception):
            ray.kill(slot.actor)
        retry = []
        for task in self._take_unfinished(slot):
            self.deaths[task.key] = self.deaths.get(task.key, 0) + 1
            if self.deaths[task.key] > self.settings.max_retries:
                self.record_failure(task, f"its worker died {self.deaths[task.key]} times; "
                                          f"last: {error}", host=slot.host)
            else:
                retry.append(task)
        self.display.message(f"Ray worker on {slot.host} died ({error}); "
                             f"{len(retry)} task(s) will run again")
        if retry:
            self.pending.appendleft(retry)
        self._start(slot)

    def _take_unfinished(self, slot: _Slot) -> list[Task]:
        tasks = [t for t in slot.group if t.key in slot.unfinished]
        slot.group, slot.unfinished = [], set()
        return tasks

    # ------------------------------------------------------------------- store check

    @contextlib.contextmanager
    def _store_probe(self) -> Iterator[tuple[str, str]]:
        """A token file in the artifact store that every worker must read back."""
        token = uuid.uuid4().hex
        name = f".tmp-ray-probe-{token}"
        self.store.root.mkdir(parents=True, exist_ok=True)
        path = self.store.path(name)
        path.write_text(token)
        try:
            yield name, token
        finally:
            path.unlink(missing_ok=True)


def _cause(error: BaseException) -> str:
    """The message of the error a worker raised (without Ray's wrapping traceback)."""
    cause = getattr(error, "cause", None)
    return _first_line(cause) if isinstance(cause, BaseException) else _first_line(error)


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Connect to Ray (or start a local instance) unless this process already is connected.
    Workers get their node's environment, not the driver's."""
    import logging

    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
