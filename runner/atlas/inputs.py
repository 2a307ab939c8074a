"""What the atlas shows, read from a study's rows: every feature that has an optimized image, a
row in a stored top-k ranking, a spatial-drop curve or a number of its own, with all of these.

The atlas reads stored roles and metric names, not kinds (docs/results.md is the contract):
``image`` artifacts with a layer and a feature are optimized images, one per *variant* (a
task's params other than which features it covers, and its seed); ``topk`` artifacts are the
per-layer rankings (``features``, ``indices``, ``values``, ``maps``); ``count_ratio`` /
``sum_ratio`` rows with a feature and an ``x`` are spatial-drop curves; any other metric of a
(layer, feature) without variant, x or position is one of the feature's numbers. A task's site
is its ``site`` param (``mlp`` when it has none).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runner.results.study import StudyData

#: Params that say which features a task covers (or what it writes besides the image), not
#: what the optimized image of a feature is: tasks differing only in these are one variant.
SELECTION_PARAMS = frozenset({"layers", "features", "chunk", "site", "panels", "top_images",
                              "trace_every"})
#: The spatial-drop curves, by metric name (``x`` = percent of active patches dropped).
DROP_CURVES = ("count_ratio", "sum_ratio")
#: A visualize number that marks a feature whose optimization failed even after its retries.
FAILED = "optimization_failed"


@dataclass(frozen=True, order=True)
class FeatureId:
    """One feature of one site of one model: what a page of the atlas is about."""

    model: str
    site: str
    layer: int
    feature: int


@dataclass
class Optimized:
    """One variant's optimized image of a feature and that task's numbers for it."""

    task_key: str
    file: Path
    sha256: str
    settings: dict[str, Any]  # what makes the image what it is: params but the selection, seed
    numbers: dict[str, float] = field(default_factory=dict)  # activation, attempts, ...
    variant: str = ""  # the settings telling it apart from the feature's other variants

    @property
    def failed(self) -> bool:
        """Whether its optimization failed even after its retries."""
        return self.numbers.get(FAILED, 0.0) >= 0.5


@dataclass
class TopImages:
    """A feature's most activating images in one stored ranking, best first."""

    source: str  # which ranking ("topk on shapes_val")
    task_key: str
    dataset: str | None
    npz_sha256: str
    indices: np.ndarray  # (k,) dataset indices (negative: no image)
    values: np.ndarray  # (k,) scores
    maps: np.ndarray | None  # (k, gh, gw) activation maps
    overlays: dict[int, tuple[Path, str]] = field(default_factory=dict)  # rank -> stored file, sha


@dataclass
class DropCurve:
    """A feature's spatial-drop curves from one task, with its layer's mean for reference."""

    source: str
    x: list[float]
    curves: dict[str, list[float]]  # count_ratio / sum_ratio -> values at x
    layer_mean: dict[str, list[float]]


@dataclass
class FeatureData:
    """Everything the atlas shows about one feature."""

    id: FeatureId
    optimized: list[Optimized] = field(default_factory=list)
    top: list[TopImages] = field(default_factory=list)
    drops: list[DropCurve] = field(default_factory=list)
    numbers: list[tuple[str, str, float]] = field(default_factory=list)  # (name, source, value)

    @property
    def failed(self) -> bool:
        """Whether some variant's optimization failed."""
        return any(o.failed for o in self.optimized)

    @property
    def varied(self) -> list[str]:
        """The settings that differ between this feature's variants."""
        names = sorted({n for o in self.optimized for n in o.settings})
        return [n for n in names
                if len({_canonical(o.settings.get(n)) for o in self.optimized}) > 1]

    def label_variants(self) -> None:
        """Name each variant by the settings that differ (none when it is the only one); a
        page then changes only when its own feature gains or loses a variant."""
        varied = self.varied
        for o in self.optimized:
            o.variant = ", ".join(f"{n}={_short(o.settings.get(n))}" for n in varied)


@dataclass
class AtlasData:
    """A study's features, by id, and the order of its models."""

    study: str
    models: list[str]
    features: dict[FeatureId, FeatureData]

    def layers(self) -> dict[tuple[str, str, int], list[FeatureData]]:
        """(model, site, layer) -> its features in index order, models in display order."""
        rank = {m: i for i, m in enumerate(self.models)}
        out: dict[tuple[str, str, int], list[FeatureData]] = defaultdict(list)
        for fid in sorted(self.features, key=lambda f: (rank.get(f.model, len(rank)), f)):
            out[(fid.model, fid.site, fid.layer)].append(self.features[fid])
        return dict(out)


def read_atlas(data: StudyData) -> AtlasData:
    """The atlas's view of a study's done tasks."""
    done = data.tasks[data.tasks["status"] == "done"]
    tasks = {row.key: row for row in done.itertuples()}
    places = {key: (row.model if isinstance(row.model, str) else "(no model)",
                    str(data.params(key).get("site", "mlp"))) for key, row in tasks.items()}
    features: dict[FeatureId, FeatureData] = {}

    def feature(key: str, layer: Any, number: Any) -> FeatureData:
        fid = FeatureId(*places[key], int(layer), int(number))
        found = features.get(fid)
        return found if found is not None else features.setdefault(fid, FeatureData(fid))

    per_feature = _per_feature_numbers(data.metrics)
    _read_optimized(data, tasks, per_feature, feature)
    _read_rankings(data, tasks, feature)
    _read_drops(data, tasks, feature)
    imaged = {(o.task_key, f.id.layer, f.id.feature)
              for f in features.values() for o in f.optimized}
    for (key, layer, number), values in per_feature.items():
        if key in tasks and (key, layer, number) not in imaged:
            target = feature(key, layer, number)
            target.numbers += [(name, _source(data, tasks[key]), value)
                               for name, value in sorted(values.items())]
    for f in features.values():
        f.label_variants()
    return AtlasData(data.study, data.models(), features)


def _per_feature_numbers(metrics: pd.DataFrame) -> dict[tuple[str, int, int], dict[str, float]]:
    """(task, layer, feature) -> {metric: value} of the metrics with a layer and a feature and
    no variant, x or position."""
    m = metrics
    plain = m[m["layer"].notna() & m["feature"].notna() & m["variant"].isna() & m["x"].isna()
              & m["position"].isna()]
    out: dict[tuple[str, int, int], dict[str, float]] = defaultdict(dict)
    for key, layer, number, name, value in zip(plain["task_key"], plain["layer"],
                                               plain["feature"], plain["name"], plain["value"],
                                               strict=True):
        out[(key, int(layer), int(number))][name] = float(value)
    return out


def _read_optimized(data: StudyData, tasks: dict[str, Any],
                    per_feature: dict[tuple[str, int, int], dict[str, float]],
                    feature: Any) -> None:
    """Add every stored optimized image to its feature, one per variant."""
    a = data.artifacts
    images = a[(a["role"] == "image") & a["layer"].notna() & a["feature"].notna()
               & a["task_key"].isin(list(tasks))]
    settings = {key: _variant_settings(data, tasks[key])
                for key in dict.fromkeys(images["task_key"])}
    same = {key: _canonical(s) for key, s in settings.items()}
    for key, layer, number, file, sha in zip(images["task_key"], images["layer"],
                                             images["feature"], images["file"], images["sha256"],
                                             strict=True):
        target = feature(key, layer, number)
        if any(same[o.task_key] == same[key] for o in target.optimized):
            continue  # the same variant from another task (overlapping feature lists)
        numbers = per_feature.get((key, int(layer), int(number)), {})
        target.optimized.append(Optimized(key, Path(file), str(sha), settings[key],
                                          dict(numbers)))


def _variant_settings(data: StudyData, task: Any) -> dict[str, Any]:
    """What makes a task's optimized images what they are: its params but the selection ones,
    and its seed."""
    params = {k: v for k, v in data.params(task.key).items() if k not in SELECTION_PARAMS}
    return {**params, "seed": None if pd.isna(task.seed) else int(task.seed)}


def _read_rankings(data: StudyData, tasks: dict[str, Any], feature: Any) -> None:
    """Add each feature's row of every stored ``topk`` ranking (and its stored overlays)."""
    a = data.artifacts
    rankings = a[(a["role"] == "topk") & a["layer"].notna() & a["task_key"].isin(list(tasks))]
    overlays = a[(a["role"] == "overlay") & a["task_key"].isin(list(rankings["task_key"]))]
    stored: dict[tuple[str, int, int], dict[int, tuple[Path, str]]] = defaultdict(dict)
    for k, la, f, r, p, s in zip(overlays["task_key"], overlays["layer"], overlays["feature"],
                                 overlays["rank"], overlays["file"], overlays["sha256"],
                                 strict=True):
        stored[(k, int(la), int(f))][int(r)] = (Path(p), str(s))
    for key, layer, file, sha in zip(rankings["task_key"], rankings["layer"], rankings["file"],
                                     rankings["sha256"], strict=True):
        arrays = _load_npz(Path(file))
        if arrays is None:
            continue
        dataset = tasks[key].dataset if isinstance(tasks[key].dataset, str) else None
        source = _source(data, tasks[key])
        maps = arrays.get("maps")
        for row, number in enumerate(arrays["features"].tolist()):
            target = feature(key, layer, number)
            target.top.append(TopImages(
                source, key, dataset, str(sha), arrays["indices"][row], arrays["values"][row],
                None if maps is None else maps[row].astype(np.float32),
                stored.get((key, int(layer), int(number)), {})))


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """A ranking's arrays, or None when the file is missing or unreadable (the task's other
    results still show)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError):
        return None
    return arrays if {"features", "indices", "values"} <= set(arrays) else None


def _read_drops(data: StudyData, tasks: dict[str, Any], feature: Any) -> None:
    """Add each feature's spatial-drop curves, with its layer's mean curve of the same task."""
    m = data.metrics
    rows = m[m["name"].isin(DROP_CURVES) & m["layer"].notna() & m["x"].notna()
             & m["task_key"].isin(list(tasks))]
    means: dict[tuple[str, int], dict[str, dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict))
    curves: dict[tuple[str, int, int], dict[str, dict[float, float]]] = defaultdict(
        lambda: defaultdict(dict))
    for key, layer, number, variant, name, x, value in zip(
            rows["task_key"], rows["layer"], rows["feature"], rows["variant"], rows["name"],
            rows["x"], rows["value"], strict=True):
        if pd.isna(number):
            if variant == "layer_mean":
                means[(key, int(layer))][name][float(x)] = float(value)
        elif pd.isna(variant):
            curves[(key, int(layer), int(number))][name][float(x)] = float(value)
    for (key, layer, number), by_name in curves.items():
        xs = sorted({x for values in by_name.values() for x in values})
        mean = means.get((key, layer), {})
        feature(key, layer, number).drops.append(DropCurve(
            _source(data, tasks[key]), xs,
            {n: [v.get(x, math.nan) for x in xs] for n, v in sorted(by_name.items())},
            {n: [v.get(x, math.nan) for x in xs] for n, v in sorted(mean.items())}))


def _source(data: StudyData, task: Any) -> str:
    """How a page names the task a number or ranking comes from: its kind and dataset, and
    its label's params when it is one of several such tasks (``topk on val [k=5]``)."""
    label = data.labels.get(task.key, "")
    params = label[label.index(" [") :] if " [" in label else ""
    dataset = f" on {task.dataset}" if isinstance(task.dataset, str) else ""
    return f"{task.kind}{dataset}{params}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 32) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
