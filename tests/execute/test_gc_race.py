"""``gc`` during a run loses nothing, and a corrupted checkpoint makes its task and the tasks
downstream of it run again.

The race: a subprocess runs ``vitstudy gc --yes`` in a tight loop while this process runs the
tiny study, five times (each round with a new train batch size, so every task is new). Files
enter the store before their rows commit; only their pending records keep gc off them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner import db
from runner.cli import main
from runner.store import Store
from tests.helpers import TINY_EVALUATIONS, TINY_STUDY, write_study

pytestmark = pytest.mark.slow

ROUNDS = 5

#: The gc loop: runs until the stop file appears, then prints runs, successes and files removed.
GC_LOOP = textwrap.dedent("""
    import re, sys, time
    from pathlib import Path
    from click.testing import CliRunner
    from runner.cli import main
    stop, runs, ok, removed = Path(sys.argv[1]), 0, 0, 0
    while not stop.exists():
        result = CliRunner().invoke(main, ["gc", "--yes"])
        runs += 1
        if result.exit_code == 0:
            ok += 1
            found = re.search(r"removed (\\d+) file", result.output)
            removed += int(found.group(1)) if found else 0
        time.sleep(0.02)  # leave the run a share of a small CI machine's cores
    print(runs, ok, removed)
""")


def _env(workdir: Path) -> dict[str, str]:
    return {"VITSTUDY_DB": f"sqlite:///{workdir / 'results.db'}",
            "VITSTUDY_ARTIFACTS": str(workdir / "artifacts")}


def _lost_artifacts(workdir: Path) -> list[str]:
    """Artifacts of done tasks that are missing from the store or no longer hash right."""
    engine = db.connect(f"sqlite:///{workdir / 'results.db'}")
    store = Store(workdir / "artifacts")
    return [f"{a.kind}/{a.role}: {a.path}" for a in db.stored_artifacts(engine)
            if not store.verify(a.path, a.sha256)]


def test_gc_in_a_tight_loop_during_runs_loses_no_artifact(workdir: Path) -> None:
    env = _env(workdir)
    stop = workdir / "stop"
    loop = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(stop)], cwd=workdir,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    try:
        for r in range(ROUNDS):
            study = write_study(workdir, TINY_EVALUATIONS.replace(
                "epochs: 2, batch_size: 32", f"epochs: 1, batch_size: {32 - r}"), f"r{r}.yaml")
            result = CliRunner().invoke(main, ["run", str(study)], env=env)
            assert result.exit_code == 0, result.output
            assert "4 done, 0 failed" in result.output, result.output
            assert _lost_artifacts(workdir) == [], f"round {r}"
            plan = CliRunner().invoke(main, ["plan", str(study)], env=env)
            assert "4 tasks: 4 cached, 0 to run" in plan.output, plan.output
    finally:
        stop.touch()
        out, _ = loop.communicate(timeout=60)
    runs, ok, removed = map(int, out.split())
    print(f"gc ran {runs} times during {ROUNDS} runs, {ok} successfully, removing {removed}")
    assert ok >= ROUNDS * 3, f"gc ran {runs} times, {ok} successfully: not a tight loop"


def test_corrupted_checkpoint_reruns_train_and_its_dependants(workdir: Path) -> None:
    env = _env(workdir)
    study = write_study(workdir, TINY_STUDY)
    assert CliRunner().invoke(main, ["run", str(study)], env=env).exit_code == 0
    engine = db.connect(env["VITSTUDY_DB"])
    _, [(train_key, checkpoint)] = db.query(
        engine, "SELECT t.key, a.path FROM tasks t JOIN artifacts a ON a.task_key = t.key "
                "WHERE t.kind = 'train'")
    path = workdir / "artifacts" / checkpoint
    path.write_bytes(bytes(255 - b for b in path.read_bytes()))  # same size, other content
    # a new task downstream of train: the run checks the checkpoint before loading it
    changed = write_study(workdir, TINY_STUDY.replace("radii: [2, 8]", "radii: [2, 4]"), "b.yaml")
    rerun = CliRunner().invoke(main, ["run", str(changed)], env=env)
    assert rerun.exit_code == 0 and "2 done, 0 failed" in rerun.output, rerun.output
    # the first study's lowpass ran on the corrupted weights' task: stale, and plan says so
    plan = CliRunner().invoke(main, ["plan", str(study)], env=env)
    assert "to run (stale)" in plan.output and "1 cached, 1 to run" in plan.output, plan.output
    again = CliRunner().invoke(main, ["run", str(study)], env=env)
    assert again.exit_code == 0 and "1 done, 0 failed" in again.output, again.output
    _, rows = db.query(engine, "SELECT kind, status, attempts FROM tasks")
    assert sorted(rows) == [("lowpass", "done", 1), ("lowpass", "done", 2), ("train", "done", 2)]
    assert db.task_status(engine, train_key) == "done"
    verify = CliRunner().invoke(main, ["verify"], env=env)
    assert verify.exit_code == 0 and "0 damaged" in verify.output, verify.output
