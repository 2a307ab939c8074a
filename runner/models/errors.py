"""User errors of the model layer: unknown models, missing weights, unknown sites.

``ModelError`` is a ``PlanError`` (hence a ``ValueError``): found while planning, it stops the
study with exit status 2 and a one-paragraph message, before anything runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from runner.kinds.base import PlanError


class ModelError(PlanError):
    """A model entry, weights file, site or feature index that cannot be used; ``field`` names
    the entry's key at fault (``name``, ``pretrained``, ``kwargs``) when one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates that look most like ``name`` (edit distance, then shared substrings)."""
    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    found = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=n, cutoff=0.6)]
    if len(found) < n:
        stem = name.lower().split(".")[0]
        shared = [c for c in pool if stem and stem in c.lower() and c not in found]
        found += shared[: n - len(found)]
    return found[:n]


def unknown_model(source: str, name: str, candidates: Iterable[str], hint: str = "") -> ModelError:
    """The error for a model name the library does not know, with close matches."""
    matches = close_matches(name, candidates)
    msg = f"{source} has no model named {name!r}."
    if matches:
        msg += " Did you mean: " + ", ".join(matches) + "?"
    if hint:
        msg += " " + hint
    return ModelError(msg, field="name")
