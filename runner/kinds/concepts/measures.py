"""What ``concepts`` measures of a set of images, from their classes alone (numpy, no model):
class purity, distinct classes, semantic spread in WordNet and the set's label, for many sets
at once, and the random k-image sets of the baseline. docs/concepts.md gives the reasoning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from runner.data.wordnet import Cover, WordNet, class_wnids, wordnet

#: The measures of one set, in the order they are reported.
MEASURES = ("purity", "distinct", "spread", "label_depth")
#: The measures also reported relative to the random baseline (``<name>_ratio``).
RELATIVE = ("purity", "distinct", "spread")


@dataclass
class ClassSpace:
    """A dataset's classes placed in WordNet: their wnids, their pairwise path distances,
    and the labels of class multisets (memoized: many features share their top classes)."""

    wnids: list[str]
    distances: np.ndarray  # (C, C) shortest-path distance between the classes' synsets
    net: WordNet
    _labels: dict[tuple[int, ...], Cover] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: str, classes: Sequence[str]) -> ClassSpace:
        """The classes of ``dataset`` in WordNet; ``DatasetError`` when one has no wnid."""
        wnids = class_wnids(dataset, classes)
        net = wordnet()
        return cls(wnids, net.distances(wnids), net)

    def label(self, classes: Sequence[int]) -> Cover:
        """The deepest synset covering at least half of the images of these classes."""
        key = tuple(sorted(int(c) for c in classes))
        if key not in self._labels:
            self._labels[key] = self.net.cover(self.wnids[c] for c in key)
        return self._labels[key]


def set_measures(sets: np.ndarray, space: ClassSpace) -> dict[str, np.ndarray]:
    """Per set (a row of ``sets``, (N, k) class indices): ``purity`` (share of the most common
    class), ``distinct`` (number of classes), ``spread`` (mean WordNet distance over the
    k(k-1)/2 pairs of images; a pair of one class counts 0) and ``label_depth``. Rows are
    taken in blocks of about ``_PAIRS`` image pairs, so a large k stays in memory."""
    n, k = sets.shape
    step = max(1, _PAIRS // (k * k))
    blocks = [_block_measures(sets[i:i + step], space) for i in range(0, n, step)]
    return {name: np.concatenate([b[name] for b in blocks]) if blocks else np.zeros(0)
            for name in MEASURES}


_PAIRS = 1 << 22


def _block_measures(sets: np.ndarray, space: ClassSpace) -> dict[str, np.ndarray]:
    k = sets.shape[1]
    same = sets[:, :, None] == sets[:, None, :]  # (N, k, k)
    pairs = space.distances[sets[:, :, None], sets[:, None, :]]  # (N, k, k), zero diagonal
    return {
        "purity": same.sum(axis=2).max(axis=1) / k,
        "distinct": 1.0 + (np.diff(np.sort(sets, axis=1), axis=1) != 0).sum(axis=1),
        "spread": pairs.sum(axis=(1, 2)) / (k * (k - 1)),
        "label_depth": np.array([space.label(row).synset.depth for row in sets], dtype=float),
    }


def random_sets(labels: np.ndarray, k: int, draws: int, seed: int) -> np.ndarray:
    """(draws, k) classes of ``draws`` sets of k distinct images drawn uniformly from the
    images whose classes are ``labels``, reproducibly from ``seed``."""
    rng = np.random.default_rng([seed, k, 0xC0C])
    return np.stack([labels[rng.choice(len(labels), k, replace=False)] for _ in range(draws)])
