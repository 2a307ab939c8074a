"""Deterministic subsets of a dataset (``subset: {per_class, limit, seed}``)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from runner.schema import Subset


def subset_identity(subset: Subset | None) -> dict[str, Any] | None:
    """The subset's part of a dataset identity; None when it keeps everything (seed unused)."""
    if subset is None or (subset.per_class is None and subset.limit is None):
        return None
    return {"per_class": subset.per_class, "limit": subset.limit, "seed": subset.seed}


def select_subset(
    labels: Sequence[int], class_ids: Sequence[str], subset: Subset | None
) -> list[int]:
    """Indices kept by ``subset``, ascending.

    ``per_class`` draws from each class with its own generator, seeded by (seed, class id), so a
    class's choice does not depend on the other classes present; ``limit`` then draws that many
    from what is left, seeded by ``seed``.
    """
    chosen = list(range(len(labels)))
    if subset is None:
        return chosen
    if subset.per_class is not None:
        by_class: dict[int, list[int]] = defaultdict(list)
        for i in chosen:
            by_class[labels[i]].append(i)
        chosen = []
        for label, members in by_class.items():
            rng = random.Random(f"{subset.seed}/{class_ids[label]}")
            chosen += rng.sample(members, min(subset.per_class, len(members)))
        chosen.sort()
    if subset.limit is not None and len(chosen) > subset.limit:
        chosen = sorted(random.Random(subset.seed).sample(chosen, subset.limit))
    return chosen
