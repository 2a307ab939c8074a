"""Bootstrap intervals against plain numpy resampling and known limits."""

from __future__ import annotations

import numpy as np
import pytest

from runner.present.bootstrap import PairedBootstrap, interval, resample_counts


def test_counts_follow_the_seeded_index_draws():
    n, n_boot = 50, 200
    counts = np.concatenate(list(resample_counts(n, n_boot=n_boot, seed=3)))
    picks = np.random.default_rng(3).integers(0, n, size=(n_boot, n))
    expected = np.stack([np.bincount(row, minlength=n) for row in picks])
    np.testing.assert_array_equal(counts, expected)
    assert (counts.sum(axis=1) == n).all()


def test_accuracy_samples_equal_resampled_means():
    rng = np.random.default_rng(0)
    correct = rng.random(80) < 0.6
    boot = PairedBootstrap({"a": correct}, n_boot=300, seed=5)
    picks = np.random.default_rng(5).integers(0, 80, size=(300, 80))
    expected = 100.0 * correct[picks].mean(axis=1)
    np.testing.assert_allclose(boot.samples("a"), expected, atol=1e-9)
    low, high = boot.accuracy("a")
    assert (low, high) == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])))
    assert low < 100.0 * correct.mean() < high


def test_interval_width_matches_the_binomial_normal_approximation():
    correct = np.arange(2000) % 2 == 0  # exactly 50%
    low, high = PairedBootstrap({"a": correct}, n_boot=2000, seed=0).accuracy("a")
    half = 1.96 * np.sqrt(0.25 / 2000) * 100  # 2.19 points
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert (low + high) / 2 == pytest.approx(50.0, abs=0.3)


def test_constant_arrays_have_degenerate_intervals():
    boot = PairedBootstrap({"all": np.ones(30, bool), "none": np.zeros(30, bool)}, n_boot=100)
    assert boot.accuracy("all") == (100.0, 100.0)
    assert boot.accuracy("none") == (0.0, 0.0)


def test_ratio_is_paired():
    rng = np.random.default_rng(1)
    a = rng.random(100) < 0.7
    sub = a & (rng.random(100) < 0.5)
    boot = PairedBootstrap({"a": a, "same": a.copy(), "sub": sub}, n_boot=500)
    assert boot.ratio("same", "a") == (100.0, 100.0)  # identical images in every resample
    low, high = boot.ratio("sub", "a")
    assert low < 100.0 * sub.mean() / a.mean() < high
    ratios = 100.0 * boot.samples("sub") / boot.samples("a")
    assert (low, high) == pytest.approx(tuple(np.percentile(ratios, [2.5, 97.5])))


def test_positions_average_and_maximum():
    rng = np.random.default_rng(2)
    p = np.array([0.2, 0.5, 0.9])
    correct = rng.random((400, 3)) < p
    boot = PairedBootstrap({"patch": correct}, n_boot=400, seed=0)
    per = boot.samples("patch")
    assert per.shape == (400, 3)
    avg, best = boot.position_average("patch"), boot.position_maximum("patch")
    measured = 100.0 * correct.mean(axis=0)
    assert avg[0] < measured.mean() < avg[1]
    assert best[0] <= measured.max() <= best[1] + 1e-9
    assert boot.position_accuracy("patch", 0)[1] < boot.position_accuracy("patch", 2)[0]


def test_mismatched_arrays_are_refused():
    with pytest.raises(ValueError, match="different numbers"):
        PairedBootstrap({"a": np.ones(3), "b": np.ones(4)})


def test_interval_ignores_non_finite_samples():
    assert interval(np.array([np.nan, np.inf, 1.0, 1.0])) == (1.0, 1.0)
    assert all(np.isnan(interval(np.array([np.nan]))))
