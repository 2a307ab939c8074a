"""Faults and concurrency of the executor on the tiny real study: a runner killed while another
waits for its tasks, SIGTERM and Ctrl-C, incremental claiming by two runners, each task's
own time in ``tasks.seconds``, and a chunked visualize killed half-way keeping its chunks."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.execute.local import work_batches
from runner.plan import make_plan
from runner.spec import load_study
from tests.fault_world import (
    assert_seconds_as_the_console,
    copy_world,
    environment,
    run_study,
    sql,
    start_holder,
    task_rows,
    tasks_by_kind,
    wait_for,
)
from tests.helpers import TINY_EVALUATIONS, TINY_STUDY, TINY_VIT, write_study

pytestmark = pytest.mark.slow

#: The tiny study with a sweep of cheap lowpass tasks on one (model, dataset): 12 tasks.
SWEEP = TINY_STUDY.replace("    params: {radii: [2, 8]}",
                           "    sweep: {radii: [[1], [2], [3], [4], [5], [6], [7], [8], [9],"
                           " [10], [11], [12]]}")
#: Training long enough to be interrupted while it runs.
SLOWER = TINY_STUDY.replace("epochs: 2,", "epochs: 4,")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny study run once (train + lowpass): its folder and the run's console output."""
    folder = tmp_path_factory.mktemp("world")
    result = run_study(folder, TINY_STUDY)
    assert result.exit_code == 0, result.output
    return folder, result.output


def _kill_when_waiting(holder: subprocess.Popen, folder: Path, killed: list[float]) -> None:
    """Thread: once a second run (the waiting runner's) has started, SIGKILL the holder."""
    wait_for(lambda: sql(folder, "SELECT COUNT(*) FROM runs WHERE study = 'tiny' AND "
                         "status = 'running'")[0][0] >= 1, 120, "the waiting runner's run")
    time.sleep(1.5)  # it has tried to claim, and waits
    holder.kill()
    holder.wait(30)
    killed.append(time.time())


def _run_while_killing(holder: subprocess.Popen, folder: Path, study_text: str
                       ) -> tuple[Any, list[float]]:
    """Run the study in ``folder`` while a thread SIGKILLs ``holder`` once this run waits;
    click's result and the kill's time (a one-item list once it happened)."""
    killed: list[float] = []
    killer = threading.Thread(target=_kill_when_waiting, args=(holder, folder, killed))
    killer.start()
    result = run_study(folder, study_text)
    killer.join()
    return result, killed


def test_killed_holder_of_an_upstream_train_task_is_taken_over_after_its_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lease = 3.0
    monkeypatch.setenv("VITSTUDY_LEASE_S", str(lease))
    study = write_study(tmp_path, TINY_STUDY)
    holder, holder_run = start_holder(tmp_path, task_rows(study, {"train"}))
    sql(tmp_path, "UPDATE runs SET host = 'another-host' WHERE id = ?", holder_run)  # lease
    result, killed = _run_while_killing(holder, tmp_path, TINY_STUDY)
    assert result.exit_code == 0, result.output
    assert "taking it over" in result.output
    rows = tasks_by_kind(tmp_path)
    assert rows["train"][:2] == ("done", 2) and rows["lowpass"][:2] == ("done", 1), rows
    assert rows["train"][2] == rows["lowpass"][2] != holder_run
    (train_started,) = sql(tmp_path, "SELECT started_at FROM tasks WHERE kind = 'train'")[0]
    assert killed and train_started - killed[0] <= lease + 10, train_started - killed[0]
    assert train_started - killed[0] >= lease - 1, "not before the lease expired"
    assert_seconds_as_the_console(result.output, tmp_path)


def test_killed_runners_claimed_group_is_taken_over_by_the_runner_waiting_for_it(
        world: tuple[Path, str], tmp_path: Path) -> None:
    folder = copy_world(world[0], tmp_path)
    study = write_study(folder, TINY_EVALUATIONS)
    holder, holder_run = start_holder(folder, task_rows(study, {"fgbg", "cls_isolation"}))
    result, _ = _run_while_killing(holder, folder, TINY_EVALUATIONS)
    assert result.exit_code == 0, result.output
    assert "2 done, 0 failed" in result.output
    rows = tasks_by_kind(folder)
    assert {k: v[:2] for k, v in rows.items()} == {
        "train": ("done", 1), "lowpass": ("done", 1), "fgbg": ("done", 2),
        "cls_isolation": ("done", 2)}
    assert rows["fgbg"][2] != holder_run
    assert_seconds_as_the_console(result.output, folder)


def _train_running(folder: Path, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, proc.communicate()
    try:
        return bool(sql(folder, "SELECT 1 FROM tasks WHERE kind = 'train' AND "
                        "status = 'running'"))
    except sqlite3.OperationalError:  # no database or no tables yet
        return False


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_run_cleanly_and_a_rerun_completes(tmp_path: Path, signum: int,
                                                            code: int) -> None:
    study = write_study(tmp_path, SLOWER)
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(study)], cwd=tmp_path,
                            env=environment(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _train_running(tmp_path, proc), 240, "the train task to start", every=0.02)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err
    assert sql(tmp_path, "SELECT status, ended_at IS NOT NULL FROM runs") == [("interrupted", 1)]
    assert sql(tmp_path, "SELECT kind, status, error FROM tasks") == [
        ("train", "interrupted", "interrupted")]
    if signum == signal.SIGINT:
        return  # the rerun is the same after either signal: once is enough
    rerun = run_study(tmp_path, SLOWER)
    assert rerun.exit_code == 0 and "2 done, 0 failed" in rerun.output, rerun.output
    assert {k: v[:2] for k, v in tasks_by_kind(tmp_path).items()} == {
        "train": ("done", 2), "lowpass": ("done", 1)}


def test_work_is_claimed_in_bounded_batches(tmp_path: Path) -> None:
    extra = TINY_EVALUATIONS[len(TINY_STUDY):] + (
        "  - kind: spatial_drop\n    models: [vit]\n    dataset: shapes_val\n")
    plan = make_plan(load_study(write_study(tmp_path, SWEEP + extra)))
    batches = work_batches(plan.tasks, size=5)
    # train alone; 14 fusable tasks of one (model, dataset) 5 at a time; spatial_drop alone
    assert [len(b) for b in batches] == [1, 5, 5, 4, 1]
    assert [b[0].kind for b in batches] == ["train", "lowpass", "lowpass", "lowpass",
                                            "spatial_drop"]
    assert sorted(t.key for b in batches for t in b) == sorted(t.key for t in plan.tasks)


def test_two_runners_share_a_sweep_each_task_once(world: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    """Two runners (threads, each its own run) on one database, claiming two tasks at a time:
    both run some, no task runs twice, and no run ever holds more than one batch."""
    import io

    from runner import db
    from runner.execute.display import Display
    from runner.execute.local import RunOptions, execute
    from runner.store import Store

    folder = copy_world(world[0], tmp_path)
    plan = make_plan(load_study(write_study(folder, SWEEP)))
    engine = db.connect(f"sqlite:///{folder / 'results.db'}")
    options = RunOptions(device="cpu", batch_size=16, claim_batch=2)
    held: list[int] = []
    summaries: list = []
    done = threading.Event()

    def runner() -> None:
        summaries.append(execute(plan, engine, Store(folder / "artifacts"), options,
                                 Display(io.StringIO())))

    def watch() -> None:
        while not done.is_set():
            held.extend(n for (n,) in sql(folder, "SELECT COUNT(*) FROM tasks WHERE status = "
                                          "'running' GROUP BY run_id"))
            time.sleep(0.01)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    done.set()
    watcher.join()
    assert [s.exit_code for s in summaries] == [0, 0]
    ran = [len(s.done) for s in summaries]
    assert sum(ran) == 12 and min(ran) >= 1, ran
    rows = sql(folder, "SELECT status, attempts FROM tasks WHERE kind = 'lowpass'")
    assert len(rows) == 13 and set(rows) == {("done", 1)}, rows
    assert held and max(held) <= 2, max(held)


def test_tasks_seconds_is_each_tasks_own_time(world: tuple[Path, str]) -> None:
    folder, output = world
    assert_seconds_as_the_console(output, folder)
    (runs,) = sql(folder, "SELECT ended_at - started_at FROM runs")
    (total,) = sql(folder, "SELECT SUM(seconds) FROM tasks")
    assert total[0] <= runs[0]


def test_runner_hands_back_only_its_own_running_tasks(world: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    from runner import db

    folder = copy_world(world[0], tmp_path)
    engine = db.connect(f"sqlite:///{folder / 'results.db'}")
    sql(folder, "UPDATE tasks SET status = 'running' WHERE kind = 'lowpass'")
    (mine,) = sql(folder, "SELECT run_id FROM tasks WHERE kind = 'lowpass'")[0]
    assert db.release_tasks(engine, mine + 1) == 0
    assert db.release_tasks(engine, mine) == 1
    assert tasks_by_kind(folder)["lowpass"][0] == "interrupted"
    assert tasks_by_kind(folder)["train"][0] == "done"


#: A chunked `features: all` visualize: the 128 features of a layer in chunks of 16, 8 tasks.
CHUNKED = """\
name: chunked
datasets: {}
""" + TINY_VIT + """\
studies:
  - kind: visualize
    models: [vit]
    params: {layers: [0], features: all, chunk: 16, steps: 4, copies: 2}
"""


def _done_chunks(folder: Path, proc: subprocess.Popen) -> list[tuple]:
    """(key, run_id, ended_at) of each done task so far; the runner must still be alive."""
    assert proc.poll() is None, proc.communicate()
    try:
        return sql(folder, "SELECT key, run_id, ended_at FROM tasks WHERE status = 'done'")
    except sqlite3.OperationalError:  # no database or no tables yet
        return []


def test_a_killed_chunked_visualize_keeps_every_finished_chunk(tmp_path: Path) -> None:
    study = write_study(tmp_path, CHUNKED)
    plan = make_plan(load_study(study))
    assert len(plan.tasks) == 8
    proc = subprocess.Popen([sys.executable, "-m", "runner", "run", str(study)], cwd=tmp_path,
                            env=environment(tmp_path, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(_done_chunks(tmp_path, proc)) >= 2, 240, "two chunks done",
                 every=0.02)
        proc.kill()  # SIGKILL: no handler runs, the running chunk is left as it was
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    finished = sql(tmp_path, "SELECT key, run_id, ended_at FROM tasks WHERE status = 'done'")
    assert 2 <= len(finished) < 8, "killed after the last chunk: nothing was interrupted"
    files = sql(tmp_path, "SELECT a.task_key, a.path, a.bytes FROM artifacts a JOIN tasks t "
                "ON t.key = a.task_key WHERE t.status = 'done'")
    assert {key for key, _, _ in files} == {key for key, _, _ in finished}
    assert all((tmp_path / "artifacts" / path).stat().st_size == size for _, path, size in files)
    rerun = run_study(tmp_path, CHUNKED)
    assert rerun.exit_code == 0, rerun.output
    assert f"{8 - len(finished)} done, 0 failed" in rerun.output
    assert f"{len(finished)} cached" in rerun.output
    after = {key: (run, ended) for key, run, ended in sql(
        tmp_path, "SELECT key, run_id, ended_at FROM tasks WHERE status = 'done'")}
    assert set(after) == {t.key for t in plan.tasks}
    assert all(after[key] == (run, ended) for key, run, ended in finished)  # not redone
