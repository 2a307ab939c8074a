"""Percentile-bootstrap confidence intervals from stored per-image correctness.

Images are resampled with replacement. All arrays of one task are resampled together (a paired
bootstrap: resample ``b`` picks the same images for every array), so a ratio such as Table 2's
normalized top-5 gets its interval from the resampled ratio itself, and "Patch Maximum" from
the maximum over positions of each resample's per-position accuracies.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping

import numpy as np

N_BOOT = 1000
LEVEL = 0.95
_MAX_CELLS = 4_000_000  # resampled image indices drawn per chunk (memory bound)


def resample_counts(n: int, *, n_boot: int = N_BOOT, seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks of (resamples, n) counts: how often each image is drawn in each resample.

    Resample ``b`` draws ``rng.integers(0, n, (n_boot, n))[b]`` with ``rng = default_rng(seed)``
    (chunked along ``b``), so results are reproducible from the seed alone.
    """
    if n <= 0:
        raise ValueError("cannot bootstrap an empty set of images")
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // n)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        picks = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        yield np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap samples of one statistic."""
    tail = 100.0 * (1.0 - level) / 2.0
    finite = np.asarray(samples, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


class PairedBootstrap:
    """Bootstrap accuracies (percent) of every per-image array of one task, on shared resamples.

    ``arrays`` maps a key (a name, a ``HitsKey``: anything hashable) to per-image correctness:
    (n,) for one accuracy, or (n, positions) for per-position accuracies. All arrays must cover
    the same n images in the same order.
    """

    def __init__(
        self,
        arrays: Mapping[Hashable, np.ndarray],
        *,
        n_boot: int = N_BOOT,
        seed: int = 0,
        level: float = LEVEL,
    ) -> None:
        self.level = level
        # 0/1 correctness in float32: sums of integer counts are exact below 2**24 images
        values = {name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()}
        sizes = {a.shape[0] for a in values.values()}
        if len(sizes) > 1:
            raise ValueError(f"arrays cover different numbers of images: {sorted(sizes)}")
        self._samples: dict[Hashable, np.ndarray] = {}
        if not values:
            return
        n = sizes.pop()
        parts: dict[Hashable, list[np.ndarray]] = {name: [] for name in values}
        for counts in resample_counts(n, n_boot=n_boot, seed=seed):
            weights = counts.astype(np.float32)  # small integers: float32 sums stay exact
            for name, a in values.items():
                parts[name].append(weights @ a.reshape(n, -1))
        for name, a in values.items():
            samples = 100.0 * np.concatenate(parts[name]).astype(np.float64) / n
            self._samples[name] = samples[:, 0] if a.ndim == 1 else samples

    def __contains__(self, name: Hashable) -> bool:
        return name in self._samples

    def samples(self, name: Hashable) -> np.ndarray:
        """Bootstrap samples of an array's accuracy: (n_boot,) or (n_boot, positions)."""
        return self._samples[name]

    def accuracy(self, name: Hashable) -> tuple[float, float]:
        """Interval of the accuracy of a per-image array."""
        return interval(self._samples[name], self.level)

    def ratio(self, numerator: Hashable, denominator: Hashable) -> tuple[float, float]:
        """Interval of ``100 * acc(numerator) / acc(denominator)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = 100.0 * self._samples[numerator] / self._samples[denominator]
        return interval(ratio, self.level)

    def position_accuracy(self, name: Hashable, position: int) -> tuple[float, float]:
        """Interval of one position's accuracy."""
        return interval(self._samples[name][:, position], self.level)

    def position_average(self, name: Hashable) -> tuple[float, float]:
        """Interval of the mean over positions of per-position accuracy ("Patch Average")."""
        return interval(self._samples[name].mean(axis=1), self.level)

    def position_maximum(self, name: Hashable) -> tuple[float, float]:
        """Interval of the best position's accuracy ("Patch Maximum")."""
        return interval(self._samples[name].max(axis=1), self.level)
