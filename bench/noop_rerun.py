"""Wall time of `vitstudy run` on a fully cached study (target: 10,000 tasks under 1 s).

For each size, a study sweeps a low-pass radius over that many values for one model, and the
database and artifact store are filled as a finished run leaves them (each task `done` with one
metric and one intact artifact). Then `vitstudy run` is timed as a user runs it: a fresh
process, cold imports included (from compiled bytecode, as an install has it: the untimed
first run writes it, even under ``PYTHONDONTWRITEBYTECODE``); it must execute no task, and
import neither torch nor timm (nor, reading a SQLite file, SQLAlchemy).
Printed for each size: the median wall time (and CPU time: on a busy machine the wall time is
the CPU time stretched by the load), the cost per cached task, and where the time goes,
measured inside the command in further fresh processes: the imports up to planning,
load_study, make_plan, the cache check, and the rest (interpreter start and exit, the command
line, output: each process's wall time less the four), medians of each.

    python bench/noop_rerun.py [--tasks 500,10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STUDY = """\
name: noop-bench
datasets:
  shapes: {{kind: synthetic, split: val, classes: 4, val_per_class: 4, size: 32}}
models:
  vit:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {{img_size: 32, patch_size: 8, depth: 2, num_classes: 4}}
studies:
  - kind: lowpass
    models: [vit]
    dataset: shapes
    sweep:
      radii: [{radii}]
"""

#: Run in a fresh process: `vitstudy run` itself, with its stages timed from inside (the
#: imports up to planning, then the three functions it calls); at exit, on stderr, the
#: seconds of each, and of the whole process since the interpreter began (``wall``).
STAGES = """\
import atexit, json, sys, time
t0 = time.perf_counter()
import runner.cli, runner.plan, runner.spec
seconds = {"import": time.perf_counter() - t0}
def timed(module, name, stage):
    function = getattr(module, name)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[stage] = time.perf_counter() - start
    setattr(module, name, wrapper)
timed(runner.spec, "load_study", "load_study")
timed(runner.plan, "make_plan", "make_plan")
timed(runner.plan, "quick_cache_status", "cache_status")
atexit.register(lambda: print(json.dumps(seconds), file=sys.stderr))
sys.argv = ["vitstudy", "run", sys.argv[1]]
runner.cli.main()
"""

#: Modules a cached `vitstudy run` must not import: the first two forbidden, SQLAlchemy
#: spared (its import was a quarter of a 10,000-task rerun).
HEAVY = ("torch", "timm", "sqlalchemy")

#: Run in a fresh process: `vitstudy run` in-process, then which of ``HEAVY`` it imported.
IMPORTS = f"""\
import json, sys
import runner.cli
sys.argv = ["vitstudy", "run", sys.argv[1]]
try:
    runner.cli.main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({{name: name in sys.modules for name in {HEAVY!r}}}))
"""


def fill(work: Path, tasks: int) -> Path:
    """Write the study, then its database and store as a finished run leaves them; returns the
    study file. The rows are the ones ``claim_task`` and ``finish_task`` write, inserted in
    bulk, and the files are put in the store's layout without fsync: one call and one fsync per
    task would take minutes at 10,000 tasks."""
    import hashlib
    import socket

    from sqlalchemy import insert

    from runner import db
    from runner.plan import make_plan
    from runner.spec import load_study

    study = work / "study.yaml"
    study.write_text(STUDY.format(radii=", ".join(f"[{r}]" for r in range(1, tasks + 1))))
    plan = make_plan(load_study(study, max_tasks=tasks))
    assert len(plan.tasks) == tasks, len(plan.tasks)
    engine = db.connect(f"sqlite:///{work / 'results.db'}")
    run_id = db.start_run(engine, study="noop-bench", command="bench", provenance={})
    now, host = time.time(), socket.gethostname()
    rows, metrics, artifacts = [], [], []
    for task in plan.tasks:
        data = task.key.encode()
        sha = hashlib.sha256(data).hexdigest()
        path = f"{sha[:2]}/{sha}.bin"
        (work / "artifacts" / sha[:2]).mkdir(parents=True, exist_ok=True)
        (work / "artifacts" / path).write_bytes(data)
        rows.append(dict(task.row("noop-bench"), status="done", run_id=run_id, attempts=1,
                         started_at=now, ended_at=now, seconds=0.0, info="{}", device="cpu",
                         error=None, host=host))
        metrics.append({"task_key": task.key, "name": "top1", "value": 1.0})
        artifacts.append({"task_key": task.key, "role": "correct", "path": path,
                          "sha256": sha, "bytes": len(data)})
    with db.write(engine) as conn:
        conn.execute(insert(db.tasks), rows)
        conn.execute(insert(db.metrics), metrics)
        conn.execute(insert(db.artifacts), artifacts)
    db.end_run(engine, run_id, "done")
    return study


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_run(cmd: list[str], env: dict[str, str], cwd: Path, tasks: int,
             repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``repeat`` runs of ``cmd``, each checked to run nothing, after
    one untimed run (the files just written reach the disk first: a rerun finds them settled)."""
    os.sync()
    walls, cpus = [], []
    for i in range(-1, repeat):
        cpu, start = _children_cpu(), time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
        if out.returncode != 0 or f"all {tasks} tasks cached" not in out.stdout:
            sys.exit(f"unexpected output:\n{out.stdout}\n{out.stderr}")
        if i >= 0:
            walls.append(time.perf_counter() - start)
            cpus.append(_children_cpu() - cpu)
    return walls, cpus


def stage_times(study: Path, work: Path, env: dict[str, str], tasks: int,
                repeat: int) -> dict[str, float]:
    """Median seconds of each stage of ``repeat`` cached runs, each a fresh process; "the
    rest" is each process's wall time less its four stages."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", STAGES, str(study)], env=env,
                             capture_output=True, text=True, cwd=work)
        wall = time.perf_counter() - start
        if out.returncode != 0 or f"all {tasks} tasks cached" not in out.stdout:
            sys.exit(f"unexpected output:\n{out.stdout}\n{out.stderr}")
        stages = json.loads(out.stderr.splitlines()[-1])
        runs.append(dict(stages, **{"the rest": wall - sum(stages.values())}))
    return {name: statistics.median(r[name] for r in runs) for name in runs[0]}


def heavy_imports(study: Path, work: Path, env: dict[str, str]) -> dict[str, bool]:
    """Which of ``HEAVY`` a cached `vitstudy run` imported."""
    out = subprocess.run([sys.executable, "-c", IMPORTS, str(study)], env=env,
                         capture_output=True, text=True, cwd=work, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def bench_size(tasks: int, repeat: int, keep: bool) -> float:
    """Fill, time and print one size; returns the median wall time."""
    work = Path(tempfile.mkdtemp(prefix="vitstudy-noop-"))
    try:
        study = fill(work, tasks)
        env = dict(os.environ, VITSTUDY_DB=f"sqlite:///{work / 'results.db'}",
                   VITSTUDY_ARTIFACTS=str(work / "artifacts"), HF_HUB_OFFLINE="1",
                   VITSTUDY_MAX_TASKS=str(max(tasks, 10_000)),
                   PYTHONPYCACHEPREFIX=str(work / "bytecode"))
        # compiled modules, as an installed package has them: the untimed first run writes
        # them (under the work folder), even where the shell says not to
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        cmd = [str(Path(sys.executable).with_name("vitstudy")), "run", str(study)]
        walls, cpus = time_run(cmd, env, work, tasks, repeat)
        stages = stage_times(study, work, env, tasks, repeat)
        heavy = heavy_imports(study, work, env)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    wall = statistics.median(walls)
    print(f"cached tasks: {tasks:,}")
    print(f"  vitstudy run (fresh process), median of {repeat}: {wall:.3f} s wall "
          f"(min {min(walls):.3f}, max {max(walls):.3f}), {statistics.median(cpus):.3f} s CPU")
    print(f"  per cached task: {1000 * wall / tasks:.3f} ms (wall time / tasks)")
    print("  where the time goes (in-process medians): " + ", ".join(
        f"{name} {seconds:.3f} s" for name, seconds in stages.items()))
    print("  imported: " + ", ".join(f"{name} {found}" for name, found in heavy.items()))
    if heavy["torch"] or heavy["timm"]:
        sys.exit("a cached run must import neither torch nor timm")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="500,10000",
                        help="comma-separated study sizes [default 500,10000]")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the prepared folders")
    args = parser.parse_args()
    sizes = [int(n) for n in args.tasks.split(",")]
    print(f"load average: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)")
    walls = {n: bench_size(n, args.repeat, args.keep) for n in sizes}
    small, big = min(sizes), max(sizes)
    if big > small:
        marginal = (walls[big] - walls[small]) / (big - small)
        print(f"cost per cached task beyond the fixed cost ({small:,} -> {big:,} tasks): "
              f"{1000 * marginal:.3f} ms")
    if 10_000 in walls:
        met = "met" if walls[10_000] < 1.0 else "NOT met"
        print(f"target: 10,000 cached tasks under 1 s on a quiet machine: {met}")
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
