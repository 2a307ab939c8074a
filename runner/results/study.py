"""One study's rows, read once from the database: tasks, metrics, artifacts, stored arrays.

Tasks are those the planner named (``task_keys``), whatever study first created them. Models
are shown in a fixed order (ViTs, then CNNs, then others; study order within a family), and a
task is labelled by its model alias, plus the params that tell it apart from the other tasks of
the same kind and model (a sweep), e.g. ``vit_b16 [fill=mean]``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from runner import results as results_db
from runner.present.families import FAMILY_ORDER, Family, model_family
from runner.present.paper import PaperMatch, match_paper_model
from runner.results.correctness import Correctness
from runner.store import file_sha256

#: How a report names the way out for a damaged ``correct`` file.
_REDO = (", so its intervals are left out; `vitstudy verify --mark-stale` makes the next run "
         "redo it")


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
    #: task key -> why its ``correct`` file was not used (corrupted, unreadable, older format)
    #: and what that means, as a clause to follow the task's label
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
        """The model's library name (what families and the paper match on), if given."""
        return self.model_names.get(model)

    def family(self, model: str) -> Family:
        """ViT, CNN or other, from the library name, else the alias."""
        return model_family(self.library_name(model), model)

    def paper(self, model: str | None) -> PaperMatch | None:
        """The paper model this one is (exact weights) or shares an architecture with."""
        return match_paper_model(self.library_name(model))

    # ----------------------------------------------------------------------------- tasks

    def done(self, kind: str) -> pd.DataFrame:
        """Done tasks of one kind, in model display order."""
        rank = {m: i for i, m in enumerate(self.models())}
        done = self.tasks[(self.tasks["kind"] == kind) & (self.tasks["status"] == "done")]
        return done.assign(_rank=done["model"].map(rank)).sort_values(
            "_rank", kind="stable").drop(columns="_rank")

    def has_kind(self, kind: str) -> bool:
        """Whether the study has a task of ``kind``, in any status."""
        return bool((self.tasks["kind"] == kind).any())

    def task_metrics(self, key: str, name: str | None = None) -> pd.DataFrame:
        """A done task's metric rows, all or those named ``name``."""
        rows = self.metrics[self.metrics["task_key"] == key]
        return rows if name is None else rows[rows["name"] == name]

    def params(self, key: str) -> dict[str, Any]:
        """A task's params as stored."""
        raw = self.tasks.loc[self.tasks["key"] == key, "params"].iloc[0]
        return json.loads(raw) if raw else {}

    def info(self, key: str) -> dict[str, Any]:
        """A task's stored ``info`` (counters, recorded settings such as ``depth``)."""
        raw = self.tasks.loc[self.tasks["key"] == key, "info"].iloc[0]
        return json.loads(raw) if raw else {}

    # ------------------------------------------------------------------------- artifacts

    def files(self, key: str, role: str) -> pd.DataFrame:
        """A task's artifacts of one role (absolute ``file``), by layer, feature, rank."""
        a = self.artifacts
        return a[(a["task_key"] == key) & (a["role"] == role)]

    def first_file(self, key: str, role: str) -> Path | None:
        """The absolute path of a task's first artifact of ``role``, or None."""
        rows = self.files(key, role)
        return None if rows.empty else Path(rows["file"].iloc[0])

    def correct(self, key: str) -> Correctness | None:
        """The task's per-image correctness, or None when not stored, unreadable, not matching
        its recorded sha256 or in an older format (then ``damaged`` says why)."""
        if key not in self._correct:
            self._correct[key] = None
            rows = self.files(key, "correct")
            if not rows.empty:
                self._correct[key] = self._read_correct(key, rows.iloc[0])
        return self._correct[key]

    def _read_correct(self, key: str, row: pd.Series) -> Correctness | None:
        path = Path(row["file"])
        if file_sha256(path) != row["sha256"]:
            state = "corrupted" if path.is_file() else "missing"
            self.damaged[key] = f"its `correct` file {row['path']} is {state}{_REDO}"
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {n: npz[n] for n in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            self.damaged[key] = f"its `correct` file cannot be read ({e}){_REDO}"
            return None
        if "variant" not in arrays:
            self.damaged[key] = ("its `correct` file was stored by an older version (no "
                                 "`variant` column), so its intervals are left out; rerun the "
                                 "task with this version to get them")
            return None
        try:
            return Correctness.from_arrays(arrays)
        except (KeyError, ValueError) as e:
            self.damaged[key] = f"its `correct` file cannot be read ({e}){_REDO}"
            return None


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
