"""The local executor end to end on a tiny real study: caching, failures, kill, two runners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import db
from runner.cli import main
from runner.store import Store
from tests.helpers import TINY_STUDY, write_study

pytestmark = pytest.mark.slow


def vitstudy(workdir: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, VITSTUDY_DB=f"sqlite:///{workdir / 'results.db'}",
               VITSTUDY_ARTIFACTS=str(workdir / "artifacts"), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def task_rows(workdir: Path) -> dict[str, tuple]:
    engine = db.connect(f"sqlite:///{workdir / 'results.db'}")
    _, rows = db.query(engine, "SELECT kind, model, status, attempts, key FROM tasks")
    return {f"{kind}/{model}/{key[:6]}": (status, attempts) for kind, model, status, attempts,
            key in rows}


def assert_done_tasks_have_their_artifacts(workdir: Path) -> None:
    engine = db.connect(f"sqlite:///{workdir / 'results.db'}")
    _, rows = db.query(engine, "SELECT a.path, a.bytes FROM artifacts a JOIN tasks t "
                       "ON t.key = a.task_key WHERE t.status = 'done'")
    store = Store(workdir / "artifacts")
    assert rows, "done tasks have artifacts"
    assert all(store.intact(path, size) for path, size in rows)


def test_run_then_rerun_is_fully_cached(workdir: Path, tiny_study: Path) -> None:
    args = ["--db", f"sqlite:///{workdir / 'r.db'}", "--artifacts", str(workdir / "a")]
    first = CliRunner().invoke(main, [*args, "run", str(tiny_study), "--batch-size", "8"])
    assert first.exit_code == 0, first.output
    assert "2 done, 0 failed" in first.output
    again = CliRunner().invoke(main, [*args, "run", str(tiny_study), "--batch-size", "16"])
    assert again.exit_code == 0 and "nothing to run: all 2 tasks cached" in again.output
    plan = CliRunner().invoke(main, [*args, "plan", str(tiny_study)])
    assert "2 tasks: 2 cached, 0 to run" in plan.output
    engine = db.connect(f"sqlite:///{workdir / 'r.db'}")
    _, runs = db.query(engine, "SELECT status, git_sha IS NOT NULL, versions FROM runs")
    assert runs[0][0] == "done" and '"torch"' in runs[0][2]
    _, metrics = db.query(engine, "SELECT name FROM results WHERE kind = 'train'")
    assert {"loss", "val_top1", "val_top5"} <= {m for (m,) in metrics}


def test_deleted_artifact_makes_its_task_run_again(workdir: Path, tiny_study: Path) -> None:
    args = ["--db", f"sqlite:///{workdir / 'r.db'}", "--artifacts", str(workdir / "a")]
    assert CliRunner().invoke(main, [*args, "run", str(tiny_study)]).exit_code == 0
    engine = db.connect(f"sqlite:///{workdir / 'r.db'}")
    _, rows = db.query(engine, "SELECT a.path FROM artifacts a JOIN tasks t ON t.key = "
                       "a.task_key WHERE t.kind = 'lowpass'")
    (workdir / "a" / rows[0][0]).unlink()
    plan = CliRunner().invoke(main, [*args, "plan", str(tiny_study)])
    assert "to run (artifacts missing)" in plan.output
    rerun = CliRunner().invoke(main, [*args, "run", str(tiny_study)])
    assert "1 done, 0 failed" in rerun.output, rerun.output
    why = CliRunner().invoke(main, [*args, "why", str(tiny_study)])
    assert "every task is cached" in why.output


def test_why_names_the_changed_param(workdir: Path, tiny_study: Path) -> None:
    args = ["--db", f"sqlite:///{workdir / 'r.db'}", "--artifacts", str(workdir / "a")]
    assert CliRunner().invoke(main, [*args, "run", str(tiny_study)]).exit_code == 0
    changed = write_study(workdir, TINY_STUDY.replace("radii: [2, 8]", "radii: [2, 4]"), "b.yaml")
    why = CliRunner().invoke(main, [*args, "why", str(changed)])
    assert "params.radii: [2.0,8.0] -> [2.0,4.0]" in why.output, why.output


def test_failing_task_is_marked_failed_and_others_go_on(workdir: Path) -> None:
    text = TINY_STUDY + "  - kind: lowpass\n    models: [broken]\n    dataset: shapes_val\n"
    text = text.replace("studies:\n", "  broken:\n    source: checkpoint\n    arch: "
                        "vit_tiny_patch16_224\n    path: garbage.pth\n    num_classes: 4\n"
                        "    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32,"
                        " num_heads: 2}\nstudies:\n")
    (workdir / "garbage.pth").write_bytes(b"not a checkpoint")
    study = write_study(workdir, text)
    args = ["--db", f"sqlite:///{workdir / 'r.db'}", "--artifacts", str(workdir / "a")]
    result = CliRunner().invoke(main, [*args, "run", str(study)])
    assert result.exit_code == 1, result.output
    assert "2 done, 1 failed" in result.output
    engine = db.connect(f"sqlite:///{workdir / 'r.db'}")
    _, rows = db.query(engine, "SELECT model, status, error FROM tasks WHERE status='failed'")
    assert len(rows) == 1 and rows[0][0] == "broken" and rows[0][2]


def test_sigkill_mid_task_then_rerun_redoes_only_the_killed_task(workdir: Path) -> None:
    slow = TINY_STUDY.replace("studies:\n", "  slow:\n    source: timm\n    name: "
                              "vit_tiny_patch16_224\n    pretrained: false\n    kwargs: "
                              "{img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, "
                              "num_heads: 2, num_classes: 4}\n    train: {dataset: shapes, "
                              "epochs: 100, batch_size: 32}\nstudies:\n")
    study = write_study(workdir, slow)
    proc = vitstudy(workdir, "run", str(study))
    deadline = time.time() + 240
    while time.time() < deadline:
        rows = task_rows(workdir) if (workdir / "results.db").exists() else {}
        if any(k.startswith("train/slow") and v[0] == "running" for k, v in rows.items()) and \
                any(v[0] == "done" for v in rows.values()):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    else:
        pytest.fail("the slow task never started")
    proc.send_signal(signal.SIGKILL)  # mid-task: the slow task is running
    proc.wait(30)
    before = task_rows(workdir)
    assert_done_tasks_have_their_artifacts(workdir)
    slow_key = next(k for k in before if k.startswith("train/slow"))
    assert before[slow_key] == ("running", 1)
    rerun = vitstudy(workdir, "run", str(study))
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    after = task_rows(workdir)
    assert after[slow_key] == ("done", 2), "the killed task ran again, to the end"
    for key, (status, _) in before.items():
        if status == "done":
            assert after[key] == ("done", 1), f"{key} was redone"
    assert_done_tasks_have_their_artifacts(workdir)


def test_two_runners_run_every_task_exactly_once(workdir: Path) -> None:
    text = TINY_STUDY.replace("    params: {radii: [2, 8]}",
                              "    params: {radii: [2, 8]}\n    sweep: {filter: [ideal, gaussian]}")
    text += ("  - kind: lowpass\n    models: [vit]\n    dataset: shapes\n"
             "    params: {radii: [4]}\n")
    study = write_study(workdir, text)
    procs = [vitstudy(workdir, "run", str(study)) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    rows = task_rows(workdir)
    assert len(rows) == 4
    assert all(v == ("done", 1) for v in rows.values()), rows
    assert_done_tasks_have_their_artifacts(workdir)


def test_decode_workers_default_to_none_on_a_cpu_and_several_on_a_gpu(monkeypatch):
    import os

    from runner.execute.provenance import MAX_AUTO_WORKERS, resolve_workers

    assert resolve_workers(3, "cpu") == 3 and resolve_workers(0, "cuda") == 0
    assert resolve_workers(None, "cpu") == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert resolve_workers(None, "cuda:1") == MAX_AUTO_WORKERS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert resolve_workers(None, "cuda") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert resolve_workers(None, "cuda") == 1
