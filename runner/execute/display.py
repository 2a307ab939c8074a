"""Progress for long runs: tasks done, items done, rate and ETA; failures as they happen.

On a terminal a live ``rich`` display; elsewhere (CI, logs, pipes) one line per event, with
item progress every few seconds so a long task is never silent.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from runner.kinds.base import Work

#: How far back the rate is measured: long enough to smooth batch noise, short enough that
#: the ETA follows the work being done now (rich's own speed estimate uses the same period).
RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class _Sample:
    t: float
    items: int
    work: float
    updates: int


class Eta:
    """A task's remaining time from the rate of its current phase over the last
    ``window_s`` seconds, in the phase's cost units; ``None`` when it cannot be known.

    Why not items done over time elapsed: a task's first phase (ranking images) is far faster
    per item than its next (optimizer steps), and deep layers cost more than shallow ones;
    a rate averaged from the start then predicts the slow work with the fast work's speed.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window_s: float = RATE_WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self.start()

    def start(self) -> None:
        """A new task: nothing measured yet."""
        self._phase = 0
        self._work_total: float | None = None
        self._samples: deque[_Sample] = deque([_Sample(self.clock(), 0, 0.0, 0)])

    def update(self, done: int, total: int | None, work: Work | None = None) -> None:
        """Record an update; ``work`` None counts items of equal cost."""
        if work is None:
            work = Work(0, float(done), None if total is None else float(total))
        if work.phase != self._phase:  # a new phase: a new unit, the old rate says nothing
            self._phase = work.phase
            self._samples.clear()
        updates = self._samples[-1].updates + 1 if self._samples else 0
        self._samples.append(_Sample(self.clock(), done, work.done, updates))
        self._work_total = work.total
        horizon = self._samples[-1].t - self.window_s
        while len(self._samples) > 2 and self._samples[1].t <= horizon:
            self._samples.popleft()

    def items_per_s(self) -> float | None:
        """Items per second over the window, or None before two updates."""
        first, last = self._samples[0], self._samples[-1]
        span = last.t - first.t
        return (last.items - first.items) / span if len(self._samples) > 1 and span > 0 else None

    def seconds_left(self) -> float | None:
        """Seconds to the phase's end at the measured rate; None without a total or a rate.
        While an update is overdue the rate counts the wait, so a stall raises the ETA."""
        if self._work_total is None or len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        done, span = last.work - first.work, last.t - first.t
        if done <= 0 or span <= 0:
            return None
        remaining = max(self._work_total - last.work, 0.0)
        rate, step = done / span, done / (last.updates - first.updates)
        waited = self.clock() - last.t
        if waited <= step / rate:  # on schedule: count down from the last update
            return max(remaining / rate - waited, 0.0)
        if remaining <= step:  # the last update is overdue: no rate says when it ends
            return None
        return (remaining - step) * (self.clock() - first.t) / (done + step)

    def describe(self, done: int, total: int | None) -> str:
        """``done/total items, rate/s, ETA 3m05s`` (or ``ETA unknown``) for progress lines."""
        rate = self.items_per_s()
        speed = f", {rate:.1f}/s" if rate is not None else ""
        if total is None:
            return f"{done} items{speed}"
        return f"{done}/{total} items{speed}, ETA {self.eta_text()}"

    def eta_text(self) -> str:
        """The ETA as ``42s``, ``3m05s`` or ``1h02m``; ``unknown`` when it cannot be told."""
        left = self.seconds_left()
        return "unknown" if left is None else format_duration(left)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Display:
    """Line-based progress (the fallback, and what tests see)."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.clock = clock
        self.total = 0
        self.finished = 0
        self._label = ""
        self._last = 0.0
        self.eta = Eta(clock)

    def start(self, total: int, cached: int) -> None:
        self.total = total
        self._print(f"{total} task(s) to run, {cached} cached")

    def task_started(self, label: str) -> None:
        self._label = label
        self._last = self.clock()
        self.eta.start()
        self._print(f"[{self.finished + 1}/{self.total}] {label} ...")

    def task_progress(self, done: int, total: int | None, work: Work | None = None) -> None:
        """An update of the current task's items (``work``: their cost, for the ETA)."""
        self.eta.update(done, total, work)
        now = self.clock()
        if now - self._last < self.every_s:
            return
        self._last = now
        self._print(f"    {self._label}: {self.eta.describe(done, total)}")

    def task_done(self, label: str, seconds: float) -> None:
        self.finished += 1
        self._print(f"[{self.finished}/{self.total}] done {label} ({seconds:.1f}s)")

    def task_failed(self, label: str, error: str) -> None:
        self.finished += 1
        self._print(f"[{self.finished}/{self.total}] FAILED {label}: {error}")

    def message(self, text: str) -> None:
        self._print(f"    {text}")

    def close(self) -> None:
        pass

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class RichDisplay(Display):
    """A live two-line display: overall tasks, and the current task's items with rate and ETA."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            _eta_column(self._eta_of), console=self.console, transient=False,
        )
        self._tasks_bar: Any = None
        self._item_bar: Any = None

    def start(self, total: int, cached: int) -> None:
        self.total = total
        self.progress.start()
        self.console.print(f"{total} task(s) to run, {cached} cached")
        self._tasks_bar = self.progress.add_task("tasks", total=total, rate="")

    def task_started(self, label: str) -> None:
        self._label = label
        self.eta.start()
        if self._item_bar is not None:
            self.progress.remove_task(self._item_bar)
        self._item_bar = self.progress.add_task(f"  {label}", total=None, rate="")

    def task_progress(self, done: int, total: int | None, work: Work | None = None) -> None:
        """Move the item bar; rate and ETA come from the recent work (``Eta``)."""
        if self._item_bar is None:
            return
        self.eta.update(done, total, work)
        rate = self.eta.items_per_s()
        self.progress.update(self._item_bar, completed=done, total=total,
                             rate="" if rate is None else f"{rate:.1f} it/s")

    def _eta_of(self, task: Any) -> str:
        """The ETA column's text: the item bar's ETA, recomputed at every refresh."""
        return f"ETA {self.eta.eta_text()}" if task.id == self._item_bar else ""

    def task_done(self, label: str, seconds: float) -> None:
        self.finished += 1
        self.progress.advance(self._tasks_bar)
        self.console.print(f"[green]done[/] {label} ({seconds:.1f}s)")

    def task_failed(self, label: str, error: str) -> None:
        self.finished += 1
        self.progress.advance(self._tasks_bar)
        self.console.print(f"[red]FAILED[/] {label}: {error}")

    def message(self, text: str) -> None:
        self.console.print(f"  {text}")

    def close(self) -> None:
        self.progress.stop()


def make_display(live: bool | None = None) -> Display:
    """A live display on a terminal, line output otherwise."""
    if live is None:
        live = sys.stderr.isatty()
    return RichDisplay() if live else Display()


def _eta_column(text_of: Callable[[Any], str]) -> Any:
    """A rich column whose text is computed at each refresh, so a stalled task's ETA moves."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(text_of(task), style="progress.remaining")

    return EtaColumn()
