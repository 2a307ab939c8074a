"""Adversarial cases: faults and other runners. A bad heartbeat lease; tasks held by dead,
silent, live or interrupted runners; another runner failing or finishing a task this one waits
for; SIGTERM and Ctrl-C while a run waits. Each case asserts the exit status, the message, and
the database afterwards (``EXPECT``); the cases that must not write assert that nothing was.

The run cases start from one tiny study run once (train + lowpass), copied into each case's
folder, whose rows are then set up as the fault leaves them.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.adversarial.harness import Case, check_case
from tests.fault_world import copy_world, dead_pid, run_study, sql, tasks_by_kind, wait_for
from tests.helpers import TINY_STUDY

pytestmark = pytest.mark.slow

#: The template folder (set by the ``world`` fixture): the tiny study, run once.
WORLD: dict[str, Path] = {}
RUN = ["--db", "sqlite:///{dir}/results.db", "--artifacts", "{dir}/artifacts", "run", "{study}"]
PLAN = ["--db", "sqlite:///{dir}/results.db", "--artifacts", "{dir}/artifacts", "plan",
        "{study}"]
WRITES = [r"results\.db", r"^artifacts/"]


# ------------------------------------------------------------------------------ set-ups


def world(folder: Path) -> None:
    """The case starts from the tiny study run to the end."""
    copy_world(WORLD["path"], folder)


def holder_run(folder: Path, *, host: str, pid: int, heartbeat_age: float) -> int:
    """Insert a run (another runner) with the given host, pid and heartbeat age; its id."""
    now = time.time()
    sql(folder, "INSERT INTO runs (study, command, host, pid, started_at, heartbeat_at, status) "
        "VALUES ('tiny', 'vitstudy run', ?, ?, ?, ?, 'running')", host, pid, now,
        now - heartbeat_age)
    return sql(folder, "SELECT MAX(id) FROM runs")[0][0]


def held(kind: str, *, host: str | None = None, pid: int | None = None,
         heartbeat_age: float = 0.0, status: str = "running") -> Callable[[Path], None]:
    """Set-up: the world, with the ``kind`` task ``status`` under another run."""
    def setup(folder: Path) -> None:
        world(folder)
        run_id = holder_run(folder, host=host or socket.gethostname(),
                            pid=dead_pid() if pid is None else pid, heartbeat_age=heartbeat_age)
        sql(folder, "UPDATE tasks SET status = ?, run_id = ? WHERE kind = ?", status, run_id,
            kind)
    return setup


def then_later(setup: Callable[[Path], None],
               action: Callable[[Path], None]) -> Callable[[Path], None]:
    """Set-up: ``setup``, then ``action`` in a thread once the case's own run has started."""
    def run(folder: Path) -> None:
        setup(folder)

        def act() -> None:
            wait_for(lambda: sql(folder, "SELECT COUNT(*) FROM runs WHERE pid = ? AND "
                                 "status = 'running'", os.getpid())[0][0] >= 1, 120,
                     "the case's run")
            time.sleep(2.0)  # it has tried to claim the task, and waits
            action(folder)

        threading.Thread(target=act, daemon=True).start()
    return run


def set_lowpass(status: str) -> Callable[[Path], None]:
    return lambda folder: sql(folder, "UPDATE tasks SET status = ? WHERE kind = 'lowpass'",
                              status)


def send(signum: int) -> Callable[[Path], None]:
    """Send ``signum`` to this process, only while a run handles it (never kill pytest)."""
    def action(_folder: Path) -> None:
        if signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler):
            os.kill(os.getpid(), signum)
    return action


def without_lowpass(folder: Path) -> None:
    sql(folder, "DELETE FROM tasks WHERE kind = 'lowpass'")


def chain(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def run(folder: Path) -> None:
        for step in steps:
            step(folder)
    return run


ELSEWHERE = {"host": "another-host", "pid": 1}
ALIVE_ELSEWHERE = held("lowpass", **ELSEWHERE, heartbeat_age=0.0)


# ------------------------------------------------------------------------------- checks


def tasks_are(**expected: tuple) -> Callable[[Path], None]:
    """Check: each kind's (status, attempts), and no task left ``running`` by this run."""
    def check(folder: Path) -> None:
        rows = {k: v[:2] for k, v in tasks_by_kind(folder).items()}
        assert rows == expected, rows
    return check


def last_run_is(status: str) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        (found,) = sql(folder, "SELECT status FROM runs ORDER BY id DESC LIMIT 1")[0]
        assert found == status
    return check


def both(*checks: Callable[[Path], None]) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        for c in checks:
            c(folder)
    return check


LEASE_MESSAGE = r"error: VITSTUDY_LEASE_S=.*positive number of seconds"
CASES = [
    Case("lease-not-a-number", RUN, env={"VITSTUDY_LEASE_S": "soon"}, study=TINY_STUDY,
         message=[LEASE_MESSAGE, "'soon'"]),
    Case("lease-zero", RUN, env={"VITSTUDY_LEASE_S": "0"}, study=TINY_STUDY,
         message=[LEASE_MESSAGE]),
    Case("lease-negative", RUN, env={"VITSTUDY_LEASE_S": "-30"}, study=TINY_STUDY,
         message=[LEASE_MESSAGE]),
    Case("lease-infinite", RUN, env={"VITSTUDY_LEASE_S": "inf"}, study=TINY_STUDY,
         message=[LEASE_MESSAGE]),
    Case("lease-nan", RUN, env={"VITSTUDY_LEASE_S": "nan"}, study=TINY_STUDY,
         message=[LEASE_MESSAGE]),
    Case("interrupted-task-planned-to-run", PLAN, exit=0, study=TINY_STUDY,
         setup=held("lowpass", status="interrupted"),
         message=[r"to run \(interrupted\)", "2 tasks: 1 cached, 1 to run"]),
    Case("interrupted-task-rerun", RUN, exit=0, study=TINY_STUDY, writes=WRITES,
         setup=held("lowpass", status="interrupted"), message=["1 done, 0 failed"]),
    Case("task-of-a-dead-process-taken-over", RUN, exit=0, study=TINY_STUDY, writes=WRITES,
         setup=held("lowpass"), message=["1 done, 0 failed"]),
    Case("task-of-a-silent-host-taken-over", RUN, exit=0, study=TINY_STUDY, writes=WRITES,
         setup=held("lowpass", **ELSEWHERE, heartbeat_age=1000.0),
         message=["1 done, 0 failed"]),
    Case("task-of-a-host-falling-silent-taken-over-after-the-lease", RUN, exit=0,
         study=TINY_STUDY, writes=WRITES, env={"VITSTUDY_LEASE_S": "6"},
         setup=ALIVE_ELSEWHERE, message=["taking it over", "1 done, 0 failed"]),
    Case("upstream-train-of-a-dead-process-taken-over", RUN, exit=0, study=TINY_STUDY,
         writes=WRITES, setup=chain(held("train"), without_lowpass),
         message=["2 done, 0 failed"]),
    Case("upstream-train-interrupted-rerun", RUN, exit=0, study=TINY_STUDY, writes=WRITES,
         setup=chain(held("train", status="interrupted"), without_lowpass),
         message=["2 done, 0 failed"]),
    Case("task-failed-by-the-runner-holding-it", RUN, exit=1, study=TINY_STUDY, writes=WRITES,
         setup=then_later(ALIVE_ELSEWHERE, set_lowpass("failed")),
         message=["failed under another runner", r"0 done, 0 failed, 0 taken by another "
                  r"runner \(1 failed there\)"]),
    Case("task-finished-by-the-runner-holding-it", RUN, exit=0, study=TINY_STUDY,
         writes=WRITES, setup=then_later(ALIVE_ELSEWHERE, set_lowpass("done")),
         message=["0 done, 0 failed, 1 taken by another runner"]),
    Case("sigterm-while-waiting", RUN, exit=143, study=TINY_STUDY, writes=WRITES,
         env={"VITSTUDY_LEASE_S": "20"},
         setup=then_later(ALIVE_ELSEWHERE, send(signal.SIGTERM)),
         message=[r"interrupted by SIGTERM: 0 done, 0 failed, 0 in flight"]),
    Case("ctrl-c-while-waiting", RUN, exit=130, study=TINY_STUDY, writes=WRITES,
         env={"VITSTUDY_LEASE_S": "20"},
         setup=then_later(ALIVE_ELSEWHERE, send(signal.SIGINT)),
         message=[r"interrupted by SIGINT: 0 done, 0 failed, 0 in flight"]),
]

#: What each run case leaves in the database.
EXPECT: dict[str, Callable[[Path], None]] = {
    "interrupted-task-rerun": both(tasks_are(train=("done", 1), lowpass=("done", 2)),
                                   last_run_is("done")),
    "task-of-a-dead-process-taken-over": tasks_are(train=("done", 1), lowpass=("done", 2)),
    "task-of-a-silent-host-taken-over": tasks_are(train=("done", 1), lowpass=("done", 2)),
    "task-of-a-host-falling-silent-taken-over-after-the-lease": tasks_are(
        train=("done", 1), lowpass=("done", 2)),
    "upstream-train-of-a-dead-process-taken-over": tasks_are(train=("done", 2),
                                                             lowpass=("done", 1)),
    "upstream-train-interrupted-rerun": tasks_are(train=("done", 2), lowpass=("done", 1)),
    "task-failed-by-the-runner-holding-it": both(
        tasks_are(train=("done", 1), lowpass=("failed", 1)), last_run_is("done")),
    "task-finished-by-the-runner-holding-it": tasks_are(train=("done", 1),
                                                        lowpass=("done", 1)),
    "sigterm-while-waiting": both(tasks_are(train=("done", 1), lowpass=("running", 1)),
                                  last_run_is("interrupted")),
    "ctrl-c-while-waiting": both(tasks_are(train=("done", 1), lowpass=("running", 1)),
                                 last_run_is("interrupted")),
}


@pytest.fixture(scope="module", autouse=True)
def template(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fault-world")
    result = run_study(folder, TINY_STUDY)
    assert result.exit_code == 0, result.output
    WORLD["path"] = folder


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)
    if case.id in EXPECT:
        EXPECT[case.id](tmp_path)
    if case.exit in (0, 1):
        assert not sql(tmp_path, "SELECT key FROM tasks t JOIN runs r ON r.id = t.run_id "
                       "WHERE t.status = 'running' AND r.pid = ?", os.getpid())
