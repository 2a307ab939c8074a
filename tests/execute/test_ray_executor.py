"""The Ray executor on a local Ray instance: the same rows as the local executor, a worker killed
mid-task is retried (a bounded number of times) without duplicate rows, a task that raises is
failed without retry. Faults are injected into the workers by a Ray worker set-up hook."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from runner import db
from runner.execute.display import Display
from runner.execute.local import RunOptions, RunSummary, execute
from runner.execute.ray import (
    RayExecutorError,
    check_store_shared,
    execute_ray,
    gpus_for,
    pool_size,
)
from runner.plan import make_plan
from runner.spec import load_study
from runner.store import Store
from tests.helpers import TINY_EVALUATIONS, TINY_STUDY, write_study

#: A second group (another dataset) next to the tiny study's lowpass task.
TWO_GROUPS = TINY_STUDY + """\
  - kind: lowpass
    models: [vit]
    dataset: shapes
    params: {radii: [4]}
"""
OPTIONS = RunOptions(device="cpu", batch_size=16)


# ---------------------------------------------------------------------- without Ray


def test_pool_size_fills_the_cluster_but_not_past_the_groups() -> None:
    cluster = {"CPU": 16.0, "GPU": 4.0}
    assert pool_size(cluster, gpus_per_actor=1, cpus_per_actor=1, groups=10, requested=None) == 4
    assert pool_size(cluster, gpus_per_actor=0.5, cpus_per_actor=1, groups=10,
                     requested=None) == 8
    assert pool_size(cluster, gpus_per_actor=0.5, cpus_per_actor=1, groups=3, requested=None) == 3
    assert pool_size(cluster, gpus_per_actor=0, cpus_per_actor=4, groups=10, requested=None) == 4
    assert pool_size(cluster, gpus_per_actor=1, cpus_per_actor=1, groups=10, requested=2) == 2
    assert pool_size(cluster, gpus_per_actor=1, cpus_per_actor=1, groups=10, requested=9) == 4
    assert pool_size({"CPU": 1.0}, gpus_per_actor=0, cpus_per_actor=2, groups=5,
                     requested=None) == 1


def test_gpu_share_follows_the_device_and_the_cluster() -> None:
    assert gpus_for("auto", {"CPU": 8, "GPU": 2}, None) == 1.0
    assert gpus_for("auto", {"CPU": 8}, None) == 0.0
    assert gpus_for("cpu", {"CPU": 8, "GPU": 2}, None) == 0.0
    assert gpus_for("cuda", {"CPU": 8, "GPU": 2}, 0.25) == 0.25
    with pytest.raises(RayExecutorError, match="has none"):
        gpus_for("auto", {"CPU": 8}, 1.0)
    with pytest.raises(RayExecutorError, match="no GPU"):
        gpus_for("cuda", {"CPU": 8}, None)


def test_a_store_the_worker_does_not_share_with_the_driver_is_refused(tmp_path: Path) -> None:
    driver, elsewhere = Store(tmp_path / "shared"), Store(tmp_path / "local-disk")
    driver.root.mkdir()
    (driver.root / ".tmp-ray-probe-x").write_text("token")
    check_store_shared(driver, ".tmp-ray-probe-x", "token", "node-1")
    with pytest.raises(RayExecutorError, match="local-disk is not shared: node-1 does not see"):
        check_store_shared(elsewhere, ".tmp-ray-probe-x", "token", "node-1")


# ------------------------------------------------------------------------ with Ray


def _install_faults() -> None:
    """Runs in every Ray worker as it starts: lowpass tasks obey the test's fault rules, if any.

    A rule applies to the tasks on its ``dataset``. ``{"mode": "raise"}``: the task raises.
    ``{"mode": "kill", "times": n}``: the task runs (its artifacts reach the store), then its
    worker process is SIGKILLed before the results go back, the first ``n`` times."""
    import json
    import os
    import signal
    from pathlib import Path

    from runner.kinds import get_kind

    folder = Path(os.environ["VITSTUDY_TEST_FAULTS"])
    kind = get_kind("lowpass")
    real_run = kind.run

    def run(ctx):  # noqa: ANN001, ANN202
        rules = json.loads((folder / "faults.json").read_text())
        rule = next((r for r in rules if r["dataset"] == ctx.dataset_name), {})
        if rule.get("mode") == "raise":
            raise RuntimeError("injected failure")
        real_run(ctx)
        if rule.get("mode") == "kill":
            kills = folder / f"kills-{ctx.dataset_name}"
            done = len(kills.read_text()) if kills.exists() else 0
            if done < rule["times"]:
                kills.write_text("k" * (done + 1))
                os.kill(os.getpid(), signal.SIGKILL)

    kind.run = run


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray instance (2 CPUs) whose workers install ``_install_faults``."""
    try:
        import ray
        from ray import cloudpickle
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed: CI must test the Ray executor", pytrace=False)
        pytest.skip("Ray is not installed (pip install 'vitstudy[ray]')")
    folder = tmp_path_factory.mktemp("faults")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    (folder / "faults.json").write_text("[]")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"worker_process_setup_hook": _install_faults,
                          "env_vars": {"VITSTUDY_TEST_FAULTS": str(folder)}})
    try:
        yield folder
    finally:
        ray.shutdown()


@pytest.fixture
def faults_set(faults: Path) -> Iterator[Any]:
    """Set the workers' fault rules for one test; none afterwards."""

    def set_rules(*rules: dict[str, Any]) -> None:
        (faults / "faults.json").write_text(json.dumps(rules))

    set_rules()
    yield set_rules
    set_rules()
    for kills in faults.glob("kills-*"):
        kills.unlink()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluation study run once by the local executor: results.db and artifacts/."""
    folder = tmp_path_factory.mktemp("local")
    summary, _ = _run(execute, folder, folder / "results.db", TINY_EVALUATIONS)
    assert len(summary.done) == 4 and not summary.failed
    return folder


def _run(executor: Any, folder: Path, database: Path, study_text: str,
         **kwargs: Any) -> tuple[RunSummary, str]:
    """Run a study with ``executor``; its summary and what its display printed."""
    plan = make_plan(load_study(write_study(folder, study_text)))
    engine = db.connect(f"sqlite:///{database}")
    display = Display(io.StringIO(), every_s=0.0)
    summary = executor(plan, engine, Store(folder / "artifacts"), OPTIONS, display, **kwargs)
    return summary, display.stream.getvalue()


def _trained_only(local: Path, folder: Path) -> Path:
    """A copy of the local run's database that keeps only the train task (so the evaluation
    tasks run again on the same checkpoint), and the same artifact store."""
    copy = folder / "results.db"
    with sqlite3.connect(local / "results.db") as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    engine = db.connect(f"sqlite:///{copy}")
    with db.write(engine) as conn:
        evaluations = select(db.tasks.c.key).where(db.tasks.c.kind != "train")
        conn.execute(delete(db.metrics).where(db.metrics.c.task_key.in_(evaluations)))
        conn.execute(delete(db.artifacts).where(db.artifacts.c.task_key.in_(evaluations)))
        conn.execute(delete(db.tasks).where(db.tasks.c.kind != "train"))
    (folder / "artifacts").symlink_to(local / "artifacts")
    return copy


def _rows(database: Path, kind_filter: str = "kind != 'train'") -> dict[str, Any]:
    """Per task: its row (timestamps, hosts, run ids aside), metrics and artifacts, sorted."""
    engine = db.connect(f"sqlite:///{database}")
    cols = ("key, study, kind, kind_version, model, model_id, dataset, dataset_id, params, "
            "key_parts, upstream, seed, status, error, attempts, device, info")
    _, tasks = db.query(engine, f"SELECT {cols} FROM tasks WHERE {kind_filter} ORDER BY key")
    out = {}
    for task in tasks:
        key = task[0]
        _, metrics = db.query(engine, "SELECT name, value, variant, layer, feature, x, position "
                              "FROM metrics WHERE task_key = :k", {"k": key})
        _, artifacts = db.query(engine, "SELECT role, path, sha256, bytes, layer, feature, rank "
                                "FROM artifacts WHERE task_key = :k", {"k": key})
        out[key] = (task, sorted(metrics, key=repr), sorted(artifacts, key=repr))
    return out


@pytest.mark.slow
def test_evaluation_rows_are_identical_to_the_local_executors(
        faults: Path, local: Path, tmp_path: Path) -> None:
    database = _trained_only(local, tmp_path)
    summary, output = _run(execute_ray, tmp_path, database, TINY_EVALUATIONS)
    assert summary.exit_code == 0 and len(summary.done) == 3 and summary.cached == 1
    expected = _rows(local / "results.db")
    assert {t[0][2] for t in expected.values()} == {"lowpass", "fgbg", "cls_isolation"}
    assert _rows(database) == expected
    engine = db.connect(f"sqlite:///{database}")
    _, hosts = db.query(engine, "SELECT DISTINCT host FROM tasks WHERE kind != 'train'")
    assert len(hosts) == 1 and hosts[0][0]
    assert "fused pass: lowpass, fgbg, cls_isolation / vit" in output


@pytest.mark.slow
def test_killed_worker_is_retried_without_duplicate_rows_a_raising_task_is_not(
        faults_set: Any, local: Path, tmp_path: Path) -> None:
    faults_set({"dataset": "shapes_val", "mode": "kill", "times": 1},
               {"dataset": "shapes", "mode": "raise"})
    database = _trained_only(local, tmp_path)
    summary, output = _run(execute_ray, tmp_path, database, TWO_GROUPS)
    assert summary.exit_code == 1 and len(summary.done) == 1 and len(summary.failed) == 1
    assert "died" in output and "1 task(s) will run again" in output
    rows = {task[6]: (task, metrics, artifacts)
            for task, metrics, artifacts in _rows(database).values()}
    killed, metrics, artifacts = rows["shapes_val"]
    _, local_metrics, local_artifacts = _rows(local / "results.db")[killed[0]]
    assert killed[12:15] == ("done", None, 2)  # status, error, attempts: it ran again
    assert (metrics, artifacts) == (local_metrics, local_artifacts)  # once each, same values
    raised, metrics, artifacts = rows["shapes"]
    assert raised[12] == "failed" and raised[14] == 1  # not retried
    assert raised[13].startswith("RuntimeError: injected failure")
    assert metrics == [] and artifacts == []


@pytest.mark.slow
def test_worker_deaths_are_retried_a_bounded_number_of_times(
        faults_set: Any, local: Path, tmp_path: Path) -> None:
    faults_set({"dataset": "shapes_val", "mode": "kill", "times": 99})
    database = _trained_only(local, tmp_path)
    summary, _ = _run(execute_ray, tmp_path, database, TINY_STUDY, max_retries=1)
    assert summary.exit_code == 1 and len(summary.failed) == 1
    (_, (task, metrics, artifacts)), = _rows(database).items()
    assert task[12] == "failed" and task[14] == 2
    assert task[13].startswith("its worker died 2 times")
    assert metrics == [] and artifacts == []
