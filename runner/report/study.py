"""One study's rows, read once from the database: tasks, metrics, artifacts, stored arrays.

Tasks are those the planner named (``task_keys``), whatever study first created them. Models
are shown in a fixed order (ViTs, then CNNs, then others; study order within a family), and a
task is labelled by its model alias, plus the params that tell it apart from the other tasks of
the same kind and model (a sweep), e.g. ``vit_b16 [fill=mean]``.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from runner import results as results_db
from runner.report.families import FAMILY_ORDER, Family, model_family
from runner.report.paper import PaperMatch, match_paper_model
from runner.store import file_sha256

_ARRAY_NAME = re.compile(r"^(?P<variant>[A-Za-z][A-Za-z_]*?)(?:_(?P<x>-?\d+(?:\.\d+)?(?:e-?\d+)?))?"
                         r"_(?P<k>top1|top5)$")


def parse_array_name(name: str) -> tuple[str, float | None, str] | None:
    """(variant, x, 'top1'|'top5') of a correctness array name such as ``lowpass_8_top1``,
    ``isolated_11.0_top5`` or ``fg_top1``; None for other arrays (``index``)."""
    found = _ARRAY_NAME.match(name)
    if found is None:
        return None
    x = found["x"]
    return found["variant"], (None if x is None else float(x)), found["k"]


@dataclass
class Correctness:
    """A task's stored per-image correctness arrays, found by (variant, x, top-k)."""

    arrays: dict[str, np.ndarray]

    def name(self, variant: str, k: str, x: float | None = None) -> str | None:
        """The array name holding ``variant`` (at ``x``) top-``k`` correctness, if stored."""
        for name in self.arrays:
            parsed = parse_array_name(name)
            if parsed is None or parsed[0] != variant or parsed[2] != k:
                continue
            if (parsed[1] is None) == (x is None) and (x is None or abs(parsed[1] - x) < 1e-9):
                return name
        return None

    def pick(self, wanted: list[tuple[str, str, float | None]]) -> dict[str, np.ndarray]:
        """The stored arrays among ``(variant, k, x)`` requests, by array name."""
        names = (self.name(v, k, x) for v, k, x in wanted)
        return {n: self.arrays[n] for n in names if n is not None}


@dataclass
class StudyData:
    """Everything a report reads, loaded once."""

    study: str
    tasks: pd.DataFrame  # every requested task found, any status
    metrics: pd.DataFrame  # runner.results.results() rows of the done ones
    artifacts: pd.DataFrame  # runner.results.artifacts() rows, with absolute ``file``
    store_root: Path
    model_names: dict[str, str] = field(default_factory=dict)  # alias -> library name
    missing_keys: list[str] = field(default_factory=list)  # requested, not in the database
    labels: dict[str, str] = field(default_factory=dict)  # task key -> display label
    _correct: dict[str, Correctness | None] = field(default_factory=dict, repr=False)
    #: task key -> why its ``correct`` file was not used (corrupted, unreadable)
    damaged: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        study: str,
        task_keys: list[str] | None,
        engine: Engine | str,
        store_root: str | Path,
        model_names: dict[str, str] | None = None,
    ) -> StudyData:
        """Read a study's tasks; ``task_keys=None`` takes every task recorded under ``study``."""
        if task_keys is None:
            tasks = results_db.tasks(engine, study=study)
            task_keys = list(tasks["key"])
        else:
            tasks = results_db.tasks(engine, task_keys=task_keys)
        order = {k: i for i, k in enumerate(dict.fromkeys(task_keys))}
        tasks = tasks.assign(_order=tasks["key"].map(order)).sort_values("_order")
        tasks = tasks.drop(columns="_order").reset_index(drop=True)
        data = cls(
            study=study,
            tasks=tasks,
            metrics=results_db.results(engine, task_keys=task_keys),
            artifacts=results_db.artifacts(engine, task_keys=task_keys, store_root=store_root),
            store_root=Path(store_root),
            model_names=dict(model_names or {}),
            missing_keys=[k for k in order if k not in set(tasks["key"])],
        )
        data.labels = task_labels(tasks)
        return data

    # ---------------------------------------------------------------------------- models

    def models(self) -> list[str]:
        """Model aliases of the study's tasks, ViTs first, then CNNs, then the rest."""
        seen = [m for m in dict.fromkeys(self.tasks["model"]) if isinstance(m, str)]
        return sorted(seen, key=lambda m: FAMILY_ORDER.index(self.family(m)))

    def library_name(self, model: str) -> str | None:
        return self.model_names.get(model)

    def family(self, model: str) -> Family:
        return model_family(self.library_name(model), model)

    def paper(self, model: str) -> PaperMatch | None:
        return match_paper_model(self.library_name(model))

    # ----------------------------------------------------------------------------- tasks

    def done(self, kind: str) -> pd.DataFrame:
        """Done tasks of one kind, in model display order."""
        rank = {m: i for i, m in enumerate(self.models())}
        done = self.tasks[(self.tasks["kind"] == kind) & (self.tasks["status"] == "done")]
        return done.assign(_rank=done["model"].map(rank)).sort_values(
            "_rank", kind="stable").drop(columns="_rank")

    def has_kind(self, kind: str) -> bool:
        return bool((self.tasks["kind"] == kind).any())

    def task_metrics(self, key: str, name: str | None = None) -> pd.DataFrame:
        rows = self.metrics[self.metrics["task_key"] == key]
        return rows if name is None else rows[rows["name"] == name]

    def params(self, key: str) -> dict[str, Any]:
        raw = self.tasks.loc[self.tasks["key"] == key, "params"].iloc[0]
        return json.loads(raw) if raw else {}

    def info(self, key: str) -> dict[str, Any]:
        raw = self.tasks.loc[self.tasks["key"] == key, "info"].iloc[0]
        return json.loads(raw) if raw else {}

    # ------------------------------------------------------------------------- artifacts

    def files(self, key: str, role: str) -> pd.DataFrame:
        """A task's artifacts of one role (absolute ``file``), by layer, feature, rank."""
        a = self.artifacts
        return a[(a["task_key"] == key) & (a["role"] == role)]

    def first_file(self, key: str, role: str) -> Path | None:
        rows = self.files(key, role)
        return None if rows.empty else Path(rows["file"].iloc[0])

    def correct(self, key: str) -> Correctness | None:
        """The task's ``correct`` arrays, or None when not stored, unreadable or not matching
        their recorded sha256 (then ``damaged`` says why, and the report shows it)."""
        if key not in self._correct:
            self._correct[key] = None
            rows = self.files(key, "correct")
            if rows.empty:
                return None
            path, sha = Path(rows["file"].iloc[0]), rows["sha256"].iloc[0]
            if file_sha256(path) != sha:
                self.damaged[key] = (f"its `correct` file {rows['path'].iloc[0]} is "
                                     f"{'corrupted' if path.is_file() else 'missing'}")
                return None
            try:
                with np.load(path, allow_pickle=False) as npz:
                    self._correct[key] = Correctness({n: npz[n] for n in npz.files})
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                self.damaged[key] = f"its `correct` file cannot be read ({e})"
        return self._correct[key]


def task_labels(tasks: pd.DataFrame) -> dict[str, str]:
    """Task key -> model alias, plus the params (or dataset, seed) that differ between tasks of
    the same kind and model."""
    labels: dict[str, str] = {}
    for (_, model), group in tasks.groupby(["kind", "model"], dropna=False, sort=False):
        name = model if isinstance(model, str) else "(no model)"
        if len(group) == 1:
            labels[group["key"].iloc[0]] = name
            continue
        settings = {
            row.key: {**(json.loads(row.params) if row.params else {}),
                      "dataset": row.dataset, "seed": row.seed}
            for row in group.itertuples()
        }
        names = sorted({n for s in settings.values() for n in s})
        differing = [n for n in names if len({_canonical(s.get(n)) for s in settings.values()}) > 1]
        for key, setting in settings.items():
            shown = ", ".join(f"{n}={_short(setting.get(n))}" for n in differing)
            labels[key] = f"{name} [{shown or key[:8]}]"
    return labels


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 24) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
