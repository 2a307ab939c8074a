"""Fill a study database through runner.db with rows shaped exactly as each kind writes them
(docs/results.md), computed from synthetic per-image correctness, with real .npz/.npy/.png
artifacts in a store. Used by tests/report/conftest.py and bench/report_html.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from runner import db
from runner.kinds.base import ArtifactRow, MetricRow
from runner.results.correctness import Correctness, HitsKey

#: Study alias -> library name: one exact paper model per family, one architecture match,
#: one model the paper never measured.
MODEL_NAMES = {
    "vit_b16": "vit_base_patch16_384.orig_in21k_ft_in1k",
    "vit_s": "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "resnet50": "torchvision/resnet50.IMAGENET1K_V1",
    "mobilenet": "mobilenetv2_100.ra_in1k",
}
ALL_KINDS = ("fgbg", "lowpass", "cls_isolation", "spatial_drop", "visualize", "topk")
RADII = (2.0, 4.0, 8.0, 16.0, 32.0)
DEPTH = 4
GRID = (3, 3)
DROP_X = tuple(float(x) for x in range(0, 101, 10))


@dataclass
class FilledStudy:
    """What ``fill_study`` wrote: where, which tasks, and the arrays behind the metrics."""

    engine: Any
    url: str
    store_root: Path
    study: str
    task_keys: list[str]
    model_names: dict[str, str]
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, model) -> key
    #: key -> its stored correctness by readable name (``lowpass_8_top1``), for the tests
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    failed_key: str | None = None


def put(store_root: Path, data: bytes, suffix: str) -> tuple[str, str, int]:
    """Store bytes through runner.store when it exists, else as a content-addressed file."""
    try:
        from runner.store import Store
    except ImportError:
        Store = None  # noqa: N806
    if Store is not None:
        return Store(store_root).put_bytes(data, suffix)
    sha = hashlib.sha256(data).hexdigest()
    rel = f"{sha[:2]}/{sha}{suffix}"
    path = store_root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel, sha, len(data)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class Hits:
    """Per-image correctness as a kind stores it (``Correctness``), and the same arrays by a
    readable name (``<variant>[_<x>]_top<k>``) for the tests to pick from."""

    def __init__(self, n: int) -> None:
        self.correct = Correctness(np.arange(n))
        self.by_name: dict[str, np.ndarray] = {}

    def add(self, variant: str, pair: tuple[np.ndarray, np.ndarray],
            x: float | None = None) -> str:
        """Store top-1 and top-5 hits of ``variant`` at ``x``; return the names' stem."""
        stem = variant if x is None else f"{variant}_{x:g}"
        for k, hits in zip((1, 5), pair, strict=True):
            self.correct.hits[HitsKey(variant, k, x)] = hits
            self.by_name[f"{stem}_top{k}"] = hits
        return stem

    def npz(self) -> bytes:
        """The ``correct`` artifact's bytes."""
        return npz_bytes(self.correct.to_arrays())


def _pair(rng: np.random.Generator, n: int, p_top1: float, shape: tuple[int, ...] = ()) -> tuple:
    """Top-1 and top-5 correctness with top-1 implying top-5."""
    top1 = rng.random((n, *shape)) < p_top1
    return top1, top1 | (rng.random((n, *shape)) < 0.6)


def _accuracy_metrics(arrays: dict[str, np.ndarray], variant: str, x: float | None = None,
                      stem: str | None = None) -> list[dict[str, Any]]:
    stem = stem or variant
    return [dict(name=k, value=100.0 * arrays[f"{stem}_{k}"].mean(), variant=variant, x=x)
            for k in ("top1", "top5")]


# --------------------------------------------------------------------------- the kinds


def fgbg_rows(rng: np.random.Generator, n: int, quality: float, vit: bool) -> tuple:
    hits = Hits(n)
    arrays = hits.by_name
    for variant, p in (("full", quality), ("fg", quality * 0.85),
                       ("bg", quality * (0.3 if vit else 0.15))):
        hits.add(variant, _pair(rng, n, p))
    metrics = [m for v in ("full", "fg", "bg") for m in _accuracy_metrics(arrays, v)]
    metrics += [dict(name="top5_norm", variant=v,
                     value=100.0 * arrays[f"{v}_top5"].mean() / arrays["full_top5"].mean())
                for v in ("fg", "bg")]
    metrics.append(dict(name="n_images", value=float(n)))
    return {"fill": "black"}, metrics, [("correct", hits.npz(), ".npz", {})], arrays


def lowpass_rows(rng: np.random.Generator, n: int, quality: float, vit: bool,
                 variants: Iterable[str] = ("lowpass",)) -> tuple:
    hits = Hits(n)
    arrays = hits.by_name
    hits.add("natural", _pair(rng, n, quality))
    metrics = _accuracy_metrics(arrays, "natural")
    scale = 4.0 if vit else 16.0
    for variant in variants:
        for r in RADII:
            keep = r / (r + scale) if variant == "lowpass" else scale / (r + scale)
            stem = hits.add(variant, _pair(rng, n, quality * keep), r)
            metrics += _accuracy_metrics(arrays, variant, r, stem)
            metrics += [dict(name=f"{k}_norm", variant=variant, x=r, value=100.0
                             * arrays[f"{stem}_{k}"].mean() / arrays[f"natural_{k}"].mean())
                        for k in ("top1", "top5")]
    metrics.append(dict(name="n_images", value=float(n)))
    params = {"radii": list(RADII), "filter": "ideal", "highpass": "highpass" in variants}
    return params, metrics, [("correct", hits.npz(), ".npz", {})], arrays


def cls_isolation_rows(rng: np.random.Generator, n: int, quality: float) -> tuple:
    hits = Hits(n)
    arrays = hits.by_name
    hits.add("natural", _pair(rng, n, quality))
    metrics = _accuracy_metrics(arrays, "natural")
    for layer in range(DEPTH + 1):  # the kind's default: every L in 0..depth
        if layer == 0:  # L = 0 is the unmodified model
            pair = (arrays["natural_top1"].copy(), arrays["natural_top5"].copy())
        else:
            p = quality * (1.0 - 0.2 * layer / DEPTH) if layer < DEPTH else 0.1
            pair = _pair(rng, n, p)
        stem = hits.add("isolated", pair, float(layer))
        metrics += _accuracy_metrics(arrays, "isolated", float(layer), stem)
    positions = GRID[0] * GRID[1]
    spread = np.linspace(0.6, 1.0, positions)
    top1 = rng.random((n, positions)) < quality * spread
    hits.add("patch", (top1, top1 | (rng.random((n, positions)) < 0.6)))
    per_position = {k: 100.0 * arrays[f"patch_{k}"].mean(axis=0) for k in ("top1", "top5")}
    for k, acc in per_position.items():
        metrics.append(dict(name=k, variant="patch_average", value=float(acc.mean())))
        metrics.append(dict(name=k, variant="patch_maximum", value=float(acc.max())))
        metrics += [dict(name=k, variant="patch", position=p, value=float(v))
                    for p, v in enumerate(acc)]
    hits.add("patch_mean_token", _pair(rng, n, quality))
    metrics += _accuracy_metrics(arrays, "patch_mean_token")
    metrics.append(dict(name="n_images", value=float(n)))
    grid = np.stack([per_position["top1"], per_position["top5"]]).reshape(2, *GRID)
    heat = Image.fromarray((grid[0] * 2.55).astype(np.uint8)).resize((48, 48))
    artifacts = [("patch_accuracy", _npy(grid.astype(np.float32)), ".npy", {}),
                 ("patch_heatmap", _png(heat.convert("RGB")), ".png", {}),
                 ("correct", hits.npz(), ".npz", {})]
    return {"layers": None, "patch_heads": True}, metrics, artifacts, arrays


def spatial_drop_rows(rng: np.random.Generator) -> tuple:
    metrics: list[dict[str, Any]] = []
    x = np.array(DROP_X)
    for layer in range(DEPTH):
        last = layer == DEPTH - 1
        curves = {"count_ratio": [], "sum_ratio": []}
        for feature in (0, 1):
            for name in curves:
                ideal = 1.0 - (x / 100.0) ** (4.0 if last else 1.0)
                curve = np.clip(ideal + rng.normal(0, 0.02, x.size), 0, None)
                curves[name].append(curve)
                metrics += [dict(name=name, layer=layer, feature=feature, x=float(xi),
                                 value=float(v)) for xi, v in zip(x, curve, strict=True)]
        for name, per_feature in curves.items():
            mean = np.mean(per_feature, axis=0)
            metrics += [dict(name=name, layer=layer, x=float(xi), variant="layer_mean",
                             value=float(v)) for xi, v in zip(x, mean, strict=True)]
            fit = np.polyval(np.polyfit(x, mean, 1), x)
            r2 = 1.0 - ((mean - fit) ** 2).sum() / ((mean - mean.mean()) ** 2).sum()
            metrics.append(dict(name="linearity_r2", layer=layer, variant=name.split("_")[0],
                                value=float(r2)))
    params = {"layers": list(range(DEPTH)), "features": [0, 1], "threshold": 0.5}
    return params, metrics, [], {}


def visualize_rows(rng: np.random.Generator, layers: tuple[int, ...] = (0, 2, 3)) -> tuple:
    metrics: list[dict[str, Any]] = []
    artifacts = []
    for layer in layers:
        for feature in (0, 1, 2):
            tile = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
            image = Image.fromarray(tile).resize((32, 32), Image.NEAREST)
            panel = Image.new("RGB", (32 * 5, 32), (255, 255, 255))
            for i in range(5):
                panel.paste(image.rotate(90 * i), (32 * i, 0))
            dims = {"layer": layer, "feature": feature}
            artifacts += [("image", _png(image), ".png", dims),
                          ("panel", _png(panel), ".png", dims)]
            metrics.append(dict(name="activation", value=float(rng.random() * 5), **dims))
            metrics += [dict(name="activation", variant="trace", x=float(s), value=float(s / 10),
                             **dims) for s in (0, 10, 20)]
    return {"layers": list(layers), "features": [0, 1, 2], "steps": 20}, metrics, artifacts, {}


def topk_rows(rng: np.random.Generator) -> tuple:
    values = np.sort(rng.random((2, 3)), axis=1)[:, ::-1]
    metrics = [dict(name="topk_value", layer=0, feature=f, position=r, value=float(values[f, r]))
               for f in range(2) for r in range(3)]
    arrays = {"indices": np.array([[3, 1, 2], [0, 4, 5]]), "values": values}
    artifacts = [("topk", npz_bytes(arrays), ".npz", {"layer": 0})]
    return {"layers": [0], "k": 3}, metrics, artifacts, {}


# ------------------------------------------------------------------------------ filling


def fill_study(
    url: str,
    store_root: Path,
    *,
    kinds: Iterable[str] = ALL_KINDS,
    study: str = "demo",
    n_images: int = 120,
    seed: int = 0,
) -> FilledStudy:
    """Write a study's tasks of the given kinds into the database at ``url``."""
    kinds = set(kinds)
    engine = db.connect(url)
    store_root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    run_id = db.start_run(engine, study=study, command="pytest",
                          provenance={"git_sha": "0" * 40, "versions": {"numpy": np.__version__},
                                      "device": "cpu"})
    filled = FilledStudy(engine, url, store_root, study, [], dict(MODEL_NAMES))
    quality = {"vit_b16": 0.8, "vit_s": 0.7, "resnet50": 0.75, "mobilenet": 0.65}
    vit = {m: m.startswith("vit") for m in MODEL_NAMES}
    plans: list[tuple[str, str, Callable[[], tuple]]] = []
    for model in MODEL_NAMES:
        plans.append(("fgbg", model, lambda m=model: fgbg_rows(rng, n_images, quality[m], vit[m])))
    for model in ("vit_b16", "vit_s", "resnet50"):
        variants = ("lowpass", "highpass") if model == "vit_b16" else ("lowpass",)
        plans.append(("lowpass", model, lambda m=model, v=variants: lowpass_rows(
            rng, n_images, quality[m], vit[m], v)))
    for model in ("vit_b16", "vit_s"):
        plans.append(("cls_isolation", model,
                      lambda m=model: cls_isolation_rows(rng, n_images, quality[m])))
        plans.append(("visualize", model, lambda: visualize_rows(rng)))
    plans.append(("spatial_drop", "vit_b16", lambda: spatial_drop_rows(rng)))
    plans.append(("topk", "vit_b16", lambda: topk_rows(rng)))
    for kind, model, make in plans:
        if kind not in kinds:
            continue
        params, metrics, artifacts, arrays = make()
        key = _write_task(engine, filled, run_id, kind, model, params)
        artifact_rows = []
        for role, data, suffix, dims in artifacts:
            path, sha, size = put(store_root, data, suffix)
            artifact_rows.append(asdict(ArtifactRow(role, path, sha, size, **dims)))
        metric_rows = [asdict(MetricRow(**m)) for m in metrics]
        db.finish_task(engine, key, metric_rows=metric_rows, artifact_rows=artifact_rows,
                       info={"skipped": 0}, device="cpu")
        filled.arrays[key] = arrays
    if "lowpass" in kinds:  # a task that raised: reports list it, tables leave it out
        key = _write_task(engine, filled, run_id, "lowpass", "mobilenet", {"radii": [2.0]})
        db.fail_task(engine, key, "RuntimeError: out of memory")
        filled.failed_key = key
    db.end_run(engine, run_id, "done")
    return filled


def _write_task(engine: Any, filled: FilledStudy, run_id: int, kind: str, model: str,
                params: dict[str, Any]) -> str:
    parts = json.dumps({"kind": kind, "model": model, "params": params, "study": filled.study},
                       sort_keys=True)
    key = hashlib.sha256(parts.encode()).hexdigest()
    row = dict(key=key, study=filled.study, kind=kind, kind_version=1, model=model,
               model_id=MODEL_NAMES[model], dataset="val", dataset_id="synthetic:val",
               params=json.dumps(params, sort_keys=True), key_parts=parts, upstream="[]", seed=0)
    assert db.claim_task(engine, row, run_id)
    filled.task_keys.append(key)
    filled.keys[(kind, model)] = key
    return key
