"""The feature-visualization section of the report (Figures 1-2, and claim 3 of issue #14):
per task, its stored panels by layer and feature (linked into the atlas when one was built);
how natural the optimized images are, by site, layer and model, with the paper's sentence and
a verdict; the optimizations that failed; and the final objective of every feature."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present import figures
from runner.present.atlas_links import report_links
from runner.present.panels import PanelCell, layer_grid
from runner.present.tables import CELL_COLUMNS, Table, cell_frame, metric_cell
from runner.present.text import slug
from runner.present.verdicts import (
    Estimate,
    Side,
    Verdict,
    combine,
    compare,
    mean_estimate,
    verdict_line,
)
from runner.results.study import StudyData

KIND = "visualize"
#: The kept_* shares, each the activation after a small change over the activation before.
SHARES = ("kept_blur", "kept_shift", "kept_jpeg")
#: What the claim-3 part plots and tabulates per feature (``kept``: the mean of the shares).
CLAIM_METRICS = ("naturalness", *SHARES, "kept")
LABELS = {"naturalness": "naturalness (activation / natural_max)",
          "kept_blur": "kept under a 1-px blur", "kept_shift": "kept under a shift",
          "kept_jpeg": "kept under JPEG 75", "kept": "kept (mean of the three)"}
FEATURE_METRICS = ("activation", "attempts", "optimization_failed", "natural_max",
                   "naturalness", *SHARES)
ATTENTION_SITES = ("q", "k", "v")
#: Features per layer in a task's panel grid (``layer_grid``'s default).
GRID_FEATURES = 8
CLAIM = ("Paper, section 3 (contribution I): optimizing the keys, queries or values of "
         "attention gives uninterpretable, adversarial images, while the feed-forward (MLP) "
         "features give informative ones. Measured here: an adversarial image excites its "
         "feature far beyond any dataset image (naturalness well above 1) and loses that "
         "activation under small changes (low kept shares).")


def visualize_activations(data: StudyData) -> pd.DataFrame:
    """The final objective (mean patch activation) of every visualized feature."""
    cells = []
    for key in data.done(KIND)["key"]:
        rows = data.task_metrics(key, "activation")
        rows = rows[rows["variant"].isna()].sort_values(["layer", "feature"])
        cells += [metric_cell(r, data.labels[key], f"layer {int(r.layer)}",
                              f"feature {int(r.feature)}", None) for r in rows.itertuples()]
    return cell_frame(cells)


def feature_frame(data: StudyData, keys: Sequence[str]) -> pd.DataFrame:
    """One row per visualized feature of the tasks ``keys``: task_key, label, model, site,
    layer, feature, its final metrics (NaN where not stored, e.g. by an older version), and
    ``kept``, the mean of its three kept shares."""
    m = data.metrics
    rows = m[m["task_key"].isin(list(keys)) & m["variant"].isna() & m["layer"].notna()
             & m["feature"].notna() & m["name"].isin(FEATURE_METRICS)]
    columns = ["task_key", "label", "model", "site", "layer", "feature", *FEATURE_METRICS,
               "kept"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    wide = rows.pivot_table(index=["task_key", "layer", "feature"], columns="name",
                            values="value", aggfunc="first").reset_index()
    wide = wide.reindex(columns=[*wide.columns, *(c for c in columns if c not in wide)])
    wide["kept"] = wide[list(SHARES)].mean(axis=1, skipna=False)
    models = data.tasks.set_index("key")["model"]
    wide["model"] = wide["task_key"].map(models)
    wide["label"] = wide["task_key"].map(data.labels)
    sites = {k: data.params(k).get("site", "mlp") for k in wide["task_key"].unique()}
    wide["site"] = wide["task_key"].map(sites)
    wide[["layer", "feature"]] = wide[["layer", "feature"]].astype(int)
    return wide[columns].sort_values(["task_key", "layer", "feature"], ignore_index=True)


def succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    """The features whose optimization did not fail (rows of an older version count as such)."""
    return frame[frame["optimization_failed"].fillna(0.0) != 1.0]


# ------------------------------------------------------------------ claim 3: naturalness


def site_estimates(frame: pd.DataFrame, metric: str, **bootstrap: Any
                   ) -> dict[tuple[str, str], Estimate]:
    """(model, site) -> the mean of ``metric`` over its succeeded features of every layer,
    with a bootstrap interval over features."""
    ok = succeeded(frame)
    return {(str(model), str(site)): mean_estimate(rows[metric].to_numpy(float), **bootstrap)
            for (model, site), rows in ok.groupby(["model", "site"], sort=False)}


def site_verdicts(estimates: dict[tuple[str, str], Estimate], side: Side
                  ) -> dict[str, Verdict]:
    """Model -> whether its mlp estimate lies ``side`` of each of its q, k, v estimates with
    the intervals apart (all of them: ``combine``); models without mlp and q/k/v are left out."""
    out: dict[str, Verdict] = {}
    for model in dict.fromkeys(m for m, _ in estimates):
        mlp = estimates.get((model, "mlp"))
        others = [estimates[(model, s)] for s in ATTENTION_SITES if (model, s) in estimates]
        if mlp is not None and others:
            out[model] = combine(compare(mlp, other, side) for other in others)
    return out


def claim_cells(frame: pd.DataFrame, **bootstrap: Any) -> pd.DataFrame:
    """The claim-3 table: per model (group) and site (row), each metric's mean over features
    with its interval; ``n`` is the number of features."""
    records = []
    for metric in CLAIM_METRICS:
        for (model, site), est in site_estimates(frame, metric, **bootstrap).items():
            records.append(dict(group=model, row=site, column=LABELS[metric], value=est.mean,
                                ci_low=est.low, ci_high=est.high, paper=math.nan,
                                paper_model=None, paper_match=None, model=model, site=site,
                                name=metric, n=est.n))
    models = list(dict.fromkeys(r["model"] for r in records))
    records.sort(key=lambda r: (models.index(r["model"]), site_rank(r["site"])))
    return pd.DataFrame.from_records(records, columns=[*CELL_COLUMNS, "model", "site", "name",
                                                       "n"])


def site_rank(site: str) -> tuple[int, str]:
    """Sites in the order the report shows them: mlp, q, k, v, out, then any other."""
    order = ("mlp", *ATTENTION_SITES, "out")
    return (order.index(site) if site in order else len(order), site)


def layer_points(rows: pd.DataFrame, metric: str, **bootstrap: Any) -> pd.DataFrame:
    """Per (site, layer): the mean of ``metric`` over features with its interval, as the
    ``label``/``x``/``value``/``ci_low``/``ci_high`` frame ``figures.curves`` draws."""
    points = []
    for (site, layer), group in succeeded(rows).groupby(["site", "layer"], sort=True):
        est = mean_estimate(group[metric].to_numpy(float), **bootstrap)
        if est.n:
            points.append(dict(label=site, x=float(layer), value=est.mean, ci_low=est.low,
                               ci_high=est.high))
    return pd.DataFrame(points, columns=["label", "x", "value", "ci_low", "ci_high"])


def claim_figure(rows: pd.DataFrame, model: str, **bootstrap: Any) -> Any:
    """One model's naturalness and kept shares against depth, a line per site."""
    metrics = ("naturalness", *SHARES)
    figure = figures.new_figure(3.1 * len(metrics), 2.9)
    sites = sorted(rows["site"].unique(), key=site_rank)
    styles = figures.line_styles((s, "ViT" if s == "mlp" else "CNN") for s in sites)
    axes = figure.subplots(1, len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        figures.curves(ax, layer_points(rows, metric, **bootstrap), styles)
        ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
        if metric != "naturalness":
            ax.axhline(0.0, color="#888888", linewidth=0.6)
        ax.set_title(LABELS[metric])
        ax.set_xlabel("layer")
    figure.suptitle(f"{model}: how natural the optimized images are, by site")
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.17, top=0.8, wspace=0.3)
    figures.side_legend(figure, list(axes))
    return figure


def build_claim(ctx: SectionContext, frame: pd.DataFrame) -> None:
    """The claim-3 part: the paper's sentence, the verdicts, a figure per model, the table."""
    measured = frame[frame["kept"].notna() | frame["naturalness"].notna()]
    if measured.empty:
        ctx.note("Claim 3 (how natural a visualization is): no task stored `naturalness` or "
                 "`kept_*` (tasks of an older version); rerun them to measure it.")
        return
    ctx.note(CLAIM)
    kept = site_verdicts(site_estimates(frame, "kept"), "above")
    natural = site_verdicts(site_estimates(frame, "naturalness"), "below")
    if not kept:
        ctx.note("No model has both `site: mlp` and `site: q`, `k` or `v` tasks, so the "
                 "claim cannot be judged; add `site` variants of the visualize entry.")
    else:
        ctx.note(verdict_line("Feed-forward images keep more of their activation under small "
                              "changes than q/k/v images (mean kept share, mlp above each of "
                              "q, k, v, 95% intervals apart)", kept))
        ctx.note(verdict_line("Feed-forward images are less far beyond the dataset's images "
                              "than q/k/v images (naturalness, mlp below each of q, k, v)",
                              natural))
    for model, rows in measured.groupby("model", sort=False):
        ctx.figure(claim_figure(rows, str(model)), f"visualize_natural_{slug(str(model))}",
                   f"{model}: per layer and site, the mean over succeeded features (95% "
                   "bootstrap interval over features) of naturalness (the optimized image's "
                   "activation over the feature's best dataset score; dotted line: 1) and the "
                   "shares of it kept under a 1-px Gaussian blur, a circular shift and JPEG "
                   "at quality 75.")
    ctx.table(Table("visualize_naturalness", "How natural the optimized images are, by site",
                    claim_cells(frame), "Mean over the succeeded features of every layer, "
                    "with a 95% bootstrap interval over features.", decimals=2))


# ------------------------------------------------------------------ failed optimizations


def build_failures(ctx: SectionContext, frame: pd.DataFrame) -> None:
    """Retried and failed optimizations: counted by task and layer, the failed ones named."""
    tried = frame[frame["attempts"].notna()]
    if tried.empty:
        return
    if not (tried["attempts"] > 1).any():
        ctx.note(f"Every one of the {len(tried)} optimizations succeeded at its first attempt.")
        return
    cells = []
    for (label, layer), rows in tried.groupby(["label", "layer"], sort=False):
        counts = {"features": len(rows), "retried": int((rows["attempts"] > 1).sum()),
                  "failed": int((rows["optimization_failed"] == 1).sum())}
        cells += [dict(group=label, row=f"layer {layer}", column=name, value=float(n),
                       ci_low=math.nan, ci_high=math.nan, paper=math.nan, paper_model=None,
                       paper_match=None, task_key=rows["task_key"].iloc[0], layer=layer)
                  for name, n in counts.items()]
    for label, rows in tried.groupby("label", sort=False):
        failed = rows[rows["optimization_failed"] == 1]
        if failed.empty:
            continue
        named = [f"layer {r.layer} feature {r.feature}" for r in failed.itertuples()]
        shown = ", ".join(named[:20]) + (f" and {len(named) - 20} more" if len(named) > 20
                                         else "")
        ctx.note(f"{label}: {len(failed)} of {len(rows)} optimizations failed even after "
                 f"their retries ({shown}): the final activation stayed at or below "
                 "`fail_floor` or below `fail_fraction` of the best dataset score. Their "
                 "images are in the panels but left out of the naturalness figures and "
                 "verdicts.")
    ctx.table(Table("visualize_failures", "Retried and failed optimizations by layer (table)",
                    pd.DataFrame.from_records(cells), "Features optimized, those that needed "
                    "a retry (metric `attempts` > 1), and those that failed every attempt "
                    "(metric `optimization_failed`).", decimals=0), folded=True)


# ---------------------------------------------------------------------- panels and links


def _panel_cells(data: StudyData, key: str, role: str) -> list[PanelCell]:
    """The task's stored images of ``role``, each with its feature's final objective."""
    activations = data.task_metrics(key, "activation")
    final = activations[activations["variant"].isna()]
    value = {(int(r.layer), int(r.feature)): float(r.value) for r in final.itertuples()}
    return [PanelCell(int(f.layer), int(f.feature), Path(f.file),
                      value.get((int(f.layer), int(f.feature))))
            for f in data.files(key, role).itertuples()
            if pd.notna(f.layer) and pd.notna(f.feature)]


def shown_features(cells: Sequence[PanelCell], per_layer: int = GRID_FEATURES
                   ) -> list[tuple[int, int]]:
    """(layer, feature) of the cells a panel grid shows: the first ``per_layer`` by feature."""
    shown: dict[int, list[int]] = {}
    for cell in sorted(cells, key=lambda c: (c.layer, c.feature)):
        if len(shown.setdefault(cell.layer, [])) < per_layer:
            shown[cell.layer].append(cell.feature)
    return [(layer, f) for layer, features in shown.items() for f in features]


def build_panels(ctx: SectionContext, task: Any) -> None:
    """A task's layer-by-feature grid of panels, and its links into the atlas."""
    data, label = ctx.data, ctx.data.labels[task.key]
    role = "panel" if not data.files(task.key, "panel").empty else "image"
    cells = _panel_cells(data, task.key, role)
    if not cells:
        ctx.note(f"{label}: no images were stored.")
        return
    site = data.params(task.key).get("site", "mlp")
    what = ("optimized image | most-activating images | their activation maps"
            if role == "panel" else "optimized images (no dataset given, so no top images)")
    ctx.image(layer_grid(cells, max_features=GRID_FEATURES), f"features_{slug(label)}",
              f"{label}: rows are layers (shallow at the top), columns are {site} features; "
              f"each panel: {what}; 'act' is the final objective.")
    if ctx.atlas is not None:
        ctx.links(f"{label} in the atlas:",
                  report_links(ctx.atlas, str(task.model), site, shown_features(cells)))


def build(ctx: SectionContext) -> None:
    """The panels of every task, the claim-3 part, failures, then the objectives (folded)."""
    done = ctx.done()
    if done is None:
        return
    for task in done.itertuples():
        build_panels(ctx, task)
    frame = feature_frame(ctx.data, list(done["key"]))
    build_claim(ctx, frame)
    build_failures(ctx, frame)
    ctx.table(Table("visualize_activation", "Final objective per visualized feature (table)",
                    visualize_activations(ctx.data), decimals=3), folded=True)


SECTION = ReportSection(
    id="features",
    title="Feature visualizations (Figures 1-2)",
    intro=(
        "Each feature is one channel of a block's feed-forward layer (the GELU output), made "
        "visible by optimizing an image to excite it and paired with the dataset images that "
        "excite it most and their patch-wise activation maps (paper, Figure 2). Read each "
        "model top to bottom: the paper finds edges and textures in early layers, then "
        "patterns, parts and whole objects (Figure 1). How natural an optimized image is "
        "(section 3, contribution I) is measured by its activation against the best dataset "
        "image's and by the share of it kept under a blur, a shift and JPEG."),
    build=build,
    order=10,
)
