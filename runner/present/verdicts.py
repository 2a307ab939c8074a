"""One-line verdicts on the paper's qualitative claims, computed from intervals.

A claim compares a measured quantity against a reference (a baseline such as chance, or another
group of models or sites) and says which side it should be on. With 95% intervals on both, the
claim *holds* when the intervals are apart on the claimed side, *does not hold* when they are
apart on the other side, and is *undecided* when they overlap. A section states the paper's
sentence, then ``verdict_line`` of its per-model (or per-site) verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from runner.present.bootstrap import LEVEL, N_BOOT, interval

Verdict = Literal["holds", "does not hold", "undecided"]
Side = Literal["above", "below"]
VERDICTS: tuple[Verdict, ...] = ("holds", "does not hold", "undecided")


@dataclass(frozen=True)
class Estimate:
    """A mean and its interval (``low``, ``high``); NaN when there was nothing to measure."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}]"


def mean_estimate(values: Sequence[float] | np.ndarray, *, n_boot: int = N_BOOT,
                  seed: int = 0, level: float = LEVEL) -> Estimate:
    """The mean of ``values`` (NaNs dropped) with a percentile-bootstrap interval over them
    (the units resampled are the values: features, images). One value gives a zero-width
    interval; none gives NaN."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    low, high = interval(means, level)
    return Estimate(float(x.mean()), low, high, int(x.size))


def compare(measured: Estimate, reference: Estimate | float, side: Side) -> Verdict:
    """Whether ``measured`` lies ``side`` of ``reference`` (an estimate or a fixed value),
    judged by whether their intervals are apart."""
    ref = reference if isinstance(reference, Estimate) else Estimate(
        float(reference), float(reference), float(reference), 1)
    if measured.n == 0 or ref.n == 0 or math.isnan(measured.mean) or math.isnan(ref.mean):
        return "undecided"
    if measured.low > ref.high:
        return "holds" if side == "above" else "does not hold"
    if measured.high < ref.low:
        return "holds" if side == "below" else "does not hold"
    return "undecided"


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """A claim made of several comparisons: holds when every one holds, does not hold when any
    does not, undecided otherwise (and when there is none)."""
    found = list(verdicts)
    if found and all(v == "holds" for v in found):
        return "holds"
    if "does not hold" in found:
        return "does not hold"
    return "undecided"


def verdict_line(claim: str, by_name: Mapping[str, Verdict]) -> str:
    """``<claim>: holds on A, B; does not hold on C; undecided on D.`` (names in the given
    order); a claim with nothing measured says so."""
    if not by_name:
        return f"{claim}: undecided (nothing measured yet)."
    parts = []
    for verdict in VERDICTS:
        names = [name for name, v in by_name.items() if v == verdict]
        if names:
            parts.append(f"{verdict} on {', '.join(names)}")
    return f"{claim}: {'; '.join(parts)}."
