"""How far the progress ETA is from the truth on a real task: the quickstart's visualize step
(ranking 600 images, then 100 optimizer steps for 4 features of layers 0, 2 and 5) on the
quickstart ViT architecture with random weights.

Every progress update is recorded with its time; once the task has ended, the true time left
at each update is known, and the ETA the display showed (``runner.execute.display.Eta``) is
compared with it, beside the old estimate (items done / time since the task started).

    python bench/progress_eta.py [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def record_visualize(steps: int) -> list[tuple[float, int, int | None, float | None]]:
    """Run the task; (time, items done, items total, ETA shown) at each update."""
    from runner.data import open_dataset
    from runner.execute.display import Eta
    from runner.execute.fused import pass_runner
    from runner.kinds.base import Progress, TaskContext
    from runner.kinds.visualize import KIND
    from runner.models import build_untrained
    from runner.spec import load_study
    from runner.store import Store

    study = load_study(ROOT / "studies" / "quickstart.yaml").study
    model = build_untrained(study.models["vit"]).eval()
    dataset = open_dataset("shapes_val", study.datasets["shapes_val"])
    eta, seen = Eta(), []

    def update(done: int, total: int | None, work: object) -> None:
        eta.update(done, total, work)  # type: ignore[arg-type]
        seen.append((time.monotonic(), done, total, eta.seconds_left()))

    params = KIND.Params(layers=[0, 2, 5], features=[0, 1, 2, 3], steps=steps)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = TaskContext(key="bench", kind="visualize", params=params, seed=0,
                          sink=Store(Path(tmp)), load_model=lambda: model,
                          load_dataset=lambda: dataset, progress=Progress(update),
                          log=lambda _text: None)
        ctx.run_pass = pass_runner(ctx)  # visualize's ranking pass runs through it
        eta.start()
        started = time.monotonic()
        KIND.run(ctx)
        ended = time.monotonic()
    return [(t - started, done, total, shown) for t, done, total, shown in seen] + [
        (ended - started, -1, None, None)]


def report(seen: list[tuple[float, int, int | None, float | None]]) -> str:
    """The error of both estimates over the optimizer phase, in percent of the phase's length
    (the time left tends to 0 at the end, where any error is a large share of it)."""
    end = seen[-1][0]
    steps = [s for s in seen[:-1] if s[2] is not None and s[2] > seen[0][2]]  # type: ignore[operator]
    start = steps[0][0]
    new, old = [], []
    for t, done, total, shown in steps[len(steps) // 10:-1]:  # past the first 10% of steps
        left = end - t
        if shown is not None:
            new.append(100 * abs(shown - left) / (end - start))
        old.append(100 * abs((total - done) * t / done - left) / (end - start))  # type: ignore[operator]
    return (f"task {end:.1f} s, optimizer phase {end - start:.1f} s ({len(steps)} updates)\n"
            f"ETA error past the first 10% of steps, % of the phase's length:\n"
            f"  measured rate (now): median {statistics.median(new):.0f}, max {max(new):.0f}\n"
            f"  items / elapsed (before): median {statistics.median(old):.0f}, "
            f"max {max(old):.0f}\n"
            f"  first ETA shown in the phase: {_first(steps):.1f} s "
            f"(true: {end - steps[1][0]:.1f} s); before: "
            f"{(steps[1][2] - steps[1][1]) * steps[1][0] / steps[1][1]:.1f} s")


def _first(steps: list[tuple[float, int, int | None, float | None]]) -> float:
    return next(s[3] for s in steps if s[3] is not None)


def main() -> None:
    """Parse the command line, run the task, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    print(report(record_visualize(parser.parse_args().steps)))


if __name__ == "__main__":
    main()
