"""runner.present.verdicts: intervals apart on the claimed side hold, on the other side do not,
overlapping ones are undecided; checked against a plain numpy bootstrap."""

import math

import numpy as np
import pytest

from runner.present.verdicts import Estimate, combine, compare, mean_estimate, verdict_line


def test_mean_estimate_matches_a_plain_bootstrap() -> None:
    values = np.array([0.1, 0.4, 0.35, 0.8, 0.5, np.nan])
    got = mean_estimate(values, n_boot=500, seed=3)
    x = values[~np.isnan(values)]
    rng = np.random.default_rng(3)
    draws = rng.integers(0, x.size, (500, x.size))
    means = x[draws].mean(axis=1)
    assert got.n == 5
    assert got.mean == pytest.approx(x.mean())
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert got.low < got.mean < got.high


def test_empty_and_single_values() -> None:
    empty = mean_estimate([])
    assert empty.n == 0 and math.isnan(empty.mean) and str(empty) == "n/a"
    one = mean_estimate([2.0])
    assert (one.mean, one.low, one.high) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize(("measured", "side", "expected"), [
    ((0.9, 0.8, 1.0), "above", "holds"),
    ((0.9, 0.8, 1.0), "below", "does not hold"),
    ((0.1, 0.0, 0.2), "below", "holds"),
    ((0.1, 0.0, 0.2), "above", "does not hold"),
    ((0.5, 0.2, 0.7), "above", "undecided"),
])
def test_compare_against_a_fixed_reference(measured, side, expected) -> None:
    assert compare(Estimate(*measured, n=10), 0.5, side) == expected


def test_compare_two_estimates_and_missing_data() -> None:
    high, low = Estimate(0.8, 0.7, 0.9, 20), Estimate(0.3, 0.2, 0.4, 20)
    overlapping = Estimate(0.6, 0.35, 0.75, 20)
    assert compare(high, low, "above") == "holds"
    assert compare(low, high, "above") == "does not hold"
    assert compare(overlapping, low, "above") == "undecided"
    assert compare(Estimate(math.nan, math.nan, math.nan, 0), low, "above") == "undecided"


def test_combine_and_verdict_line() -> None:
    assert combine(["holds", "holds"]) == "holds"
    assert combine(["holds", "undecided"]) == "undecided"
    assert combine(["holds", "does not hold", "undecided"]) == "does not hold"
    assert combine([]) == "undecided"
    line = verdict_line("Maps highlight the object",
                        {"vit": "holds", "deit": "holds", "cnn": "does not hold",
                         "clip": "undecided"})
    assert line == ("Maps highlight the object: holds on vit, deit; does not hold on cnn; "
                    "undecided on clip.")
    assert verdict_line("c", {}) == "c: undecided (nothing measured yet)."
