"""Per-image correctness of an evaluation task, with its dimensions stored as data.

A task that measures accuracy keeps, for every image it evaluated, whether the label was in the
top-k, for each input variant (and its ``x``: a radius, an insertion layer). Stored as the
task's ``correct`` artifact, it lets the report compute bootstrap intervals without a rerun.

The file is an ``.npz`` whose arrays are ``index`` (n,), the dataset indices; ``hits_<i>``,
each (n,) or (n, positions); and three columns describing them, row ``i`` for ``hits_<i>``:
``variant`` (str), ``x`` (float, NaN for none) and ``k`` (int). No name is ever parsed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class HitsKey:
    """What one correctness array measures: top-``k`` hits on ``variant`` at ``x``."""

    variant: str
    k: int
    x: float | None = None

    def matches(self, variant: str, k: int, x: float | None) -> bool:
        """Equal, with ``x`` compared as floats (a radius read back from SQL as 8.0 is 8)."""
        if self.variant != variant or self.k != k or (self.x is None) != (x is None):
            return False
        return self.x is None or abs(self.x - float(x)) < 1e-9


@dataclass
class Correctness:
    """A task's per-image correctness: dataset indices and hit arrays keyed by ``HitsKey``."""

    index: np.ndarray
    hits: dict[HitsKey, np.ndarray] = field(default_factory=dict)

    def find(self, variant: str, k: int, x: float | None = None) -> HitsKey | None:
        """The stored key for top-``k`` on ``variant`` at ``x``, or None."""
        for key in self.hits:
            if key.matches(variant, k, x):
                return key
        return None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the ``.npz`` file (see the module docstring)."""
        keys = list(self.hits)
        arrays: dict[str, np.ndarray] = {"index": np.asarray(self.index)}
        arrays.update({f"hits_{i}": np.asarray(self.hits[key]) for i, key in enumerate(keys)})
        arrays["variant"] = np.array([key.variant for key in keys], dtype=np.str_)
        arrays["x"] = np.array([math.nan if key.x is None else key.x for key in keys],
                               dtype=np.float64)
        arrays["k"] = np.array([key.k for key in keys], dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> Correctness:
        """Read the arrays of a ``correct`` file; ValueError when they are not in this format."""
        missing = {"index", "variant", "x", "k"} - set(arrays)
        if missing:
            raise ValueError(f"not a correctness file (no {', '.join(sorted(missing))}); "
                             "it was written by an older version")
        variants, xs, ks = arrays["variant"], arrays["x"], arrays["k"]
        hits = {}
        for i, (variant, x, k) in enumerate(zip(variants, xs, ks, strict=True)):
            key = HitsKey(str(variant), int(k), None if math.isnan(float(x)) else float(x))
            hits[key] = np.asarray(arrays[f"hits_{i}"])
        return cls(np.asarray(arrays["index"]), hits)
