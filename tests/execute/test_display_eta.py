"""The progress ETA against the truth, with a fake clock: items of unequal cost, a fast phase
followed by a slow one, a slowdown nobody announced, a stall (issue #11: "ETA 5 s for a step
that took 250 s"; "about 200 s for several minutes running")."""

from __future__ import annotations

import io

import pytest

from runner.execute.display import Display, Eta, format_duration
from runner.kinds.base import Progress, truncated_forward_cost


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run_items(clock: Clock, eta: Eta, progress: Progress, seconds: list[float],
              work: list[float] | None = None) -> list[tuple[float, float | None]]:
    """Advance one item per entry of ``seconds`` (reporting ``work`` when given); return
    (true seconds left, ETA) after every item and halfway through every item."""
    seen = []
    for i, duration in enumerate(seconds):
        clock.t += duration / 2
        seen.append((sum(seconds[i:]) - duration / 2, eta.seconds_left()))
        clock.t += duration / 2
        progress.advance(work=None if work is None else work[i])
        seen.append((sum(seconds[i + 1:]), eta.seconds_left()))
    return seen


def tracked(clock: Clock) -> tuple[Eta, Progress]:
    eta = Eta(clock)
    return eta, Progress(eta.update)


def test_cost_doubling_halfway_is_predicted_when_items_report_their_cost() -> None:
    """Visualize's deep layers: the second half's steps cost twice the first half's; the kind
    says so (``work``), and the ETA is within 1% of the truth at every point after item 1."""
    clock = Clock()
    eta, progress = tracked(clock)
    costs = [1.0] * 50 + [2.0] * 50
    progress.set_total(100, work=sum(costs))
    assert eta.seconds_left() is None  # nothing measured yet: no ETA rather than a guess
    seen = run_items(clock, eta, progress, [3.0 * c for c in costs], work=costs)
    for truth, predicted in seen[2:]:
        assert predicted == pytest.approx(truth, rel=0.01, abs=0.01)
    assert eta.eta_text() == "0s"


def test_an_unannounced_slowdown_is_followed_within_the_window() -> None:
    """Items that do not report their cost: once the rate window has seen only the slow
    items, the ETA is within 5%; the whole-task average it replaces is off by over a third."""
    clock = Clock()
    eta, progress = tracked(clock)
    durations = [1.0] * 50 + [2.0] * 100
    progress.set_total(150)
    start = clock.t
    seen = run_items(clock, eta, progress, durations)
    after_window = [(truth, predicted) for k, (truth, predicted) in enumerate(seen)
                    if k % 2 == 1 and k // 2 >= 50 + eta.window_s / 2]
    assert len(after_window) > 50
    for truth, predicted in after_window:
        assert predicted == pytest.approx(truth, rel=0.05)
    # 20 items into the slow part, the old display's items done / time elapsed is far off
    done, elapsed, truth = 70, 50 * 1.0 + 20 * 2.0, 80 * 2.0
    naive = (150 - done) / (done / elapsed)
    assert abs(naive - truth) / truth > 0.3
    assert seen[2 * done - 1] == (truth, pytest.approx(truth, rel=0.05))
    assert clock.t - start == sum(durations)


def test_a_new_phase_is_not_predicted_from_the_previous_one() -> None:
    """Ranking 600 images at 100/s, then 100 optimizer steps of 2.5 s: the old ETA said about
    1 s for 250 s of work. Now: unknown until a step is measured, then within 1%."""
    clock = Clock()
    eta, progress = tracked(clock)
    progress.set_total(600)
    run_items(clock, eta, progress, [0.01] * 600)
    progress.set_total(700)
    assert eta.seconds_left() is None
    assert eta.eta_text() == "unknown"
    seen = run_items(clock, eta, progress, [2.5] * 100)
    assert seen[0][1] is None  # halfway through the first step: still nothing measured
    for truth, predicted in seen[1:]:
        assert predicted == pytest.approx(truth, rel=0.01, abs=0.01)


def test_a_stall_raises_the_eta_instead_of_freezing_it() -> None:
    """Steps of 1 s, then one that hangs: once overdue the ETA grows with the wait; when the
    overdue item is the last one, it is unknown rather than a confident 0 s."""
    clock = Clock()
    eta, progress = tracked(clock)
    progress.set_total(20)
    run_items(clock, eta, progress, [1.0] * 10)
    assert eta.seconds_left() == pytest.approx(10.0)
    clock.t += 0.5
    assert eta.seconds_left() == pytest.approx(9.5)  # on schedule: counts down
    clock.t += 20.0
    stalled = eta.seconds_left()
    clock.t += 20.0
    assert stalled is not None and 9.0 < stalled < eta.seconds_left()  # type: ignore[operator]
    run_items(clock, eta, progress, [1.0] * 9)
    clock.t += 60.0
    assert eta.seconds_left() is None


def test_without_a_total_there_is_a_rate_but_no_eta() -> None:
    clock = Clock()
    eta, progress = tracked(clock)
    run_items(clock, eta, progress, [0.5] * 4)
    assert eta.seconds_left() is None
    assert eta.describe(4, None) == "4 items, 2.0/s"


def test_line_display_prints_measured_rate_and_eta() -> None:
    """The line output (CI, logs) a user reads: rate from the recent items, ETA or unknown."""
    clock, stream = Clock(), io.StringIO()
    display = Display(stream=stream, every_s=0.0, clock=clock)
    display.start(1, 0)
    display.task_started("visualize / vit / abc")
    progress = Progress(display.task_progress)
    progress.set_total(10, work=20.0)
    for _ in range(4):
        clock.t += 4.0
        progress.advance(work=2.0)
    lines = stream.getvalue().splitlines()
    assert lines[2] == "    visualize / vit / abc: 0/10 items, ETA unknown"
    assert lines[-1] == "    visualize / vit / abc: 4/10 items, 0.2/s, ETA 24s"


def test_work_is_counted_per_phase() -> None:
    updates = []
    progress = Progress(lambda done, total, work: updates.append((done, total, work)))
    progress.advance(3)
    progress.set_total(13, work=40.0)
    progress.advance(2, work=8.0)
    (_, _, before), (_, _, started), (done, total, during) = updates
    assert (before.phase, before.done, before.total) == (0, 3.0, None)
    assert (started.phase, started.done, started.total) == (1, 0.0, 40.0)
    assert (done, total, during.done) == (5, 13, 8.0)


def test_deep_layers_cost_more() -> None:
    assert truncated_forward_cost(5) / truncated_forward_cost(0) == pytest.approx(3.5)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m"), (90000, "25h00m"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# ------------------------------------------------------ kinds report work that adds up


def record_work(ctx) -> list:
    """Replace the context's progress with one that keeps every update."""
    updates: list = []
    ctx.progress = Progress(lambda done, total, work: updates.append((done, total, work)))
    return updates


def test_visualize_weighs_deep_steps_by_depth_and_its_work_adds_up(tmp_path) -> None:
    """A real visualize run on a 2-block ViT: a step of the block-1 group counts 3/2 of a
    block-0 step, and the phase ends with work done == work announced."""
    from runner.kinds.visualize import KIND
    from tests.kinds.vis_helpers import RED, context, planted_vit

    params = KIND.Params(layers=[0, 1], features=[RED, 3], steps=3, retries=0)
    ctx = context(tmp_path, "visualize", params, planted_vit(), batch_size=16)
    updates = record_work(ctx)
    KIND.run(ctx)
    works = [w for _, _, w in updates]
    steps = [b.done - a.done for a, b in zip(works, works[1:], strict=False)]
    assert steps == [2 * 2.0] * 3 + [2 * 3.0] * 3  # 2 features x (layer + 2), per step
    assert works[-1].done == works[0].total == 3 * (4.0 + 6.0)
    assert updates[-1][:2] == (6, 6)


def test_visualize_retries_are_phases_whose_work_adds_up(tmp_path) -> None:
    """The features that fail are retried in phases of their own, each weighed like the first
    and adding up. On the planted ViT only RED at layer 0 succeeds at 3 steps, so the 3 others
    (one of layer 0 at 2 a step, two of layer 1 at 3) are retried twice."""
    from runner.kinds.visualize import KIND
    from tests.kinds.vis_helpers import RED, context, planted_vit

    params = KIND.Params(layers=[0, 1], features=[RED, 3], steps=3, retries=2)
    ctx = context(tmp_path, "visualize", params, planted_vit(), batch_size=16)
    updates = record_work(ctx)
    KIND.run(ctx)
    ends = {}
    for _, _, work in updates:
        ends[work.phase] = work
    assert sorted(ends) == [1, 2, 3]
    assert ends[1].done == ends[1].total == 3 * (4.0 + 6.0)
    assert ends[2].done == ends[2].total == ends[3].done == ends[3].total == 3 * (2.0 + 6.0)
    assert updates[-1][:2] == (18, 18)


def test_spatial_drop_work_adds_up_after_its_ranking_phase(tmp_path) -> None:
    from runner.kinds.spatial_drop import KIND
    from tests.kinds.vis_helpers import RED, MemoryDataset, colour_images, context, planted_vit

    params = KIND.Params(layers=[0, 1], features=[RED], images=3, seeds=1, percents=[0.0, 50.0])
    data = MemoryDataset(colour_images(5))
    ctx = context(tmp_path, "spatial_drop", params, planted_vit(), data, batch_size=8)
    updates = record_work(ctx)
    KIND.run(ctx)
    drop_phase = [w for _, _, w in updates if w.phase == 2]
    assert drop_phase[0].total == drop_phase[-1].done == 3 * 3 * (2.0 + 3.0)
    assert updates[-1][0] == updates[-1][1] == len(data) + 2 * 3 * 3


def test_train_counts_its_validation_passes_as_work(tmp_path) -> None:
    """A real 2-epoch training run with validation: each epoch's validation pass adds work
    without items, and the phase ends with work done == work announced."""
    from runner.kinds.train import KIND
    from tests.kinds.vis_helpers import MemoryDataset, colour_images, context, random_vit

    data = MemoryDataset(colour_images(8))
    params = KIND.Params(val="val", epochs=2, batch_size=4, augment=False)
    ctx = context(tmp_path, "train", params, random_vit(), data)
    ctx.open_dataset = lambda _name: data
    updates = record_work(ctx)
    KIND.run(ctx)
    works = [w for _, _, w in updates]
    val_work = len(data) / 4 / 3
    assert works[0].total == pytest.approx(2 * (2 + val_work))
    assert works[-1].done == pytest.approx(works[0].total)
    assert [d for d, _, _ in updates] == [0, 1, 2, 2, 3, 4, 4]  # steps, then validation
