"""95% bootstrap intervals of a kind's accuracy metrics, from each task's stored correctness.

A metric row (``top1``/``top5`` and their ``_norm``) is matched to the stored arrays by its
dimensions: top-``k`` of the row's ``variant`` at its ``x`` (``runner.results.correctness``).
A ``_norm`` metric is the ratio to a reference variant's accuracy (the kind says which); a row
with a ``position`` reads one column of a 2-D (per-position) array; a *derived* variant reduces
a 2-D array over positions (the kind names them: ``patch_average`` -> mean of ``patch``). All
arrays of a task share one paired bootstrap, whose resamples depend only on (n, n_boot, seed).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from runner.present.bootstrap import N_BOOT, PairedBootstrap
from runner.present.tables import concat_rows
from runner.results.correctness import Correctness
from runner.results.study import StudyData

ACCURACY_NAMES = ("top1", "top5")
NORMALIZED_NAMES = ("top1_norm", "top5_norm")
#: The ``k`` of top-k of each accuracy metric.
TOP_K = {"top1": 1, "top5": 5, "top1_norm": 1, "top5_norm": 5}

Reduction = Literal["average", "maximum"]
#: metric variant -> (stored 2-D variant, how positions are reduced)
Derived = dict[str, tuple[str, Reduction]]

_NAN = (math.nan, math.nan)


def with_intervals(
    data: StudyData,
    kind: str,
    *,
    reference: str = "natural",
    derived: Derived | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """The kind's accuracy metric rows (``top1``/``top5`` and their ``_norm``) of its done
    tasks, with ``ci_low``/``ci_high``: NaN where the task stored no matching arrays.
    ``reference``: the variant ``_norm`` metrics divide by; ``derived``: see ``Derived``."""
    frames = []
    for key in data.done(kind)["key"]:
        rows = data.task_metrics(key)
        rows = rows[rows["name"].isin(ACCURACY_NAMES + NORMALIZED_NAMES)].copy()
        rows["ci_low"], rows["ci_high"] = np.nan, np.nan
        correct = data.correct(key)
        if correct is not None and not rows.empty:
            arrays = {k: a for k, a in correct.hits.items() if a.ndim in (1, 2)}
            if arrays:
                boot = PairedBootstrap(arrays, n_boot=n_boot, seed=seed)
                bounds = [row_interval(r, correct, boot, reference, derived or {})
                          for r in rows.itertuples()]
                rows["ci_low"] = [b[0] for b in bounds]
                rows["ci_high"] = [b[1] for b in bounds]
        frames.append(rows)
    return concat_rows(frames, list(data.metrics.columns) + ["ci_low", "ci_high"])


def row_interval(row: Any, correct: Correctness, boot: PairedBootstrap, reference: str,
                 derived: Derived) -> tuple[float, float]:
    """The interval of one metric row (an ``itertuples`` row), or NaNs when its arrays are not
    stored."""
    k = TOP_K[row.name]
    x = None if pd.isna(row.x) else float(row.x)
    if row.name in NORMALIZED_NAMES:
        numerator = correct.find(row.variant, k, x)
        denominator = correct.find(reference, k)
        if numerator in boot and denominator in boot:
            return boot.ratio(numerator, denominator)
        return _NAN
    if row.variant in derived:
        stored, reduction = derived[row.variant]
        key = correct.find(stored, k)
        if key not in boot or boot.samples(key).ndim != 2:
            return _NAN
        reduce = {"average": boot.position_average, "maximum": boot.position_maximum}
        return reduce[reduction](key)
    key = correct.find(row.variant, k, x)
    if key not in boot:
        return _NAN
    samples = boot.samples(key)
    if samples.ndim == 1:
        return boot.accuracy(key)
    if pd.isna(row.position) or int(row.position) >= samples.shape[1]:
        return _NAN
    return boot.position_accuracy(key, int(row.position))
