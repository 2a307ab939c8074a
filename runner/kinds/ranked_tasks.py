"""The done tasks of one model that rank its features the same way (site, k, score, dataset)
and differ only in which features or layers they hold -- the chunks of one entry, say: what
the sections of the ranking kinds (topk, concepts, map_boxes) report as one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from runner.results.study import StudyData, task_labels

#: Params that only say which part of one ranking a task holds (a chunk of features, layers).
_PART_PARAMS = ("features", "chunk", "render", "layers", "maps")


@dataclass(frozen=True)
class RankedTasks:
    """The done tasks of one model and kind that rank the same way (site, k, score, dataset)
    and differ only in which features or layers they hold: one ranking to report."""

    label: str
    model: str
    site: str
    score: str
    keys: tuple[str, ...]


def ranked_tasks(data: StudyData, done: pd.DataFrame) -> list[RankedTasks]:
    """The done tasks grouped into rankings, labelled like tasks (model, plus what differs)."""
    groups: dict[tuple[str, str, str], list[pd.Series]] = {}
    for _, task in done.iterrows():
        params = {k: v for k, v in data.params(task["key"]).items() if k not in _PART_PARAMS}
        text = json.dumps(params, sort_keys=True, default=str)
        groups.setdefault((task["model"], task["dataset"], text), []).append(task)
    first = pd.DataFrame([{**tasks[0].to_dict(), "params": text}
                          for (_, _, text), tasks in groups.items()])
    labels = task_labels(first) if len(first) else {}
    out = []
    for (model, _, text), tasks in groups.items():
        params = json.loads(text)
        out.append(RankedTasks(labels[tasks[0]["key"]], model, params.get("site", "mlp"),
                               params.get("score", "mean"), tuple(t["key"] for t in tasks)))
    return out
