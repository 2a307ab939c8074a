"""The concepts section of the report (issue #14, claim 1; paper section 6): per model, how pure
and how spread in WordNet its features' most activating images are, by layer and overall,
relative to random k-image sets, CLIP ViTs beside supervised ViTs and CNNs, with intervals over
features, example labels, and a one-line verdict per model."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from runner.kinds.ranked_tasks import RankedTasks, ranked_tasks
from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import curves, line_styles, new_figure, side_legend
from runner.present.tables import Table, cell_frame
from runner.present.verdicts import Estimate, combine, compare, mean_estimate, verdict_line
from runner.results.study import StudyData

KIND = "concepts"
CLIP, SUPERVISED = "CLIP ViT", "supervised ViT"
#: Model groups in display order: the paper contrasts CLIP ViTs with ImageNet-trained ones.
GROUPS = (CLIP, SUPERVISED, "CNN", "other")
_CLIP_NAME = re.compile(r"clip", re.IGNORECASE)  # open_clip/..., timm's *_clip_*, SigLIP
#: Per-feature measures shown, as (metric, column heading).
SHOWN = (("purity", "purity"), ("spread", "spread"), ("purity_ratio", "purity / random"),
         ("spread_ratio", "spread / random"), ("distinct", "distinct classes"),
         ("label_depth", "label depth"))
#: The example table's columns, as (example field, column heading).
_EXAMPLE_COLUMNS = (("purity", "purity"), ("distinct", "distinct"), ("depth", "label depth"),
                    ("share", "label share"))
#: Example features per model: the purest, and the deepest-labelled among multi-class ones.
EXAMPLES = 3
PAPER = ("Paper (section 6): neurons of CLIP-trained ViTs respond to concepts (morbidity: "
         "skulls, tombstones, weapons; music: disco balls, speakers, record players), while "
         "ImageNet-trained ViT features detect single objects or backgrounds.")


def model_group(data: StudyData, model: str) -> str:
    """CLIP ViT, supervised ViT, CNN or other: the family, a ViT split by its training."""
    family = data.family(model)
    if family != "ViT":
        return family
    name = data.library_name(model) or model
    return CLIP if _CLIP_NAME.search(name) else SUPERVISED


def feature_frame(data: StudyData, group: RankedTasks) -> pd.DataFrame:
    """One row per (layer, feature) of a model's tasks, a column per measure."""
    rows = pd.concat([data.task_metrics(k) for k in group.keys])
    rows = rows[rows["variant"].isna() & rows["feature"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["layer", "feature", *(m for m, _ in SHOWN)])
    wide = rows.pivot_table(index=["layer", "feature"], columns="name", values="value",
                            aggfunc="first")
    return wide.reset_index()


def random_means(data: StudyData, group: RankedTasks) -> dict[str, float]:
    """The random k-image sets' mean of each measure (the same in every layer and task)."""
    rows = pd.concat([data.task_metrics(k) for k in group.keys])
    rows = rows[rows["variant"] == "random"]
    return rows.groupby("name")["value"].first().to_dict()


def layer_curves(label: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Per layer, the mean purity and spread ratio over features with their intervals."""
    out = []
    for layer, rows in frame.groupby("layer", sort=True):
        for name in ("purity_ratio", "spread_ratio"):
            if name in rows:
                e = mean_estimate(rows[name].to_numpy(float))
                out.append({"label": label, "name": name, "x": float(layer), "value": e.mean,
                            "ci_low": e.low, "ci_high": e.high})
    return pd.DataFrame(out)


def layer_figure(points: pd.DataFrame, styles: dict) -> Figure:
    """Two panels against the layer: purity and spread, each as a ratio to random sets."""
    figure = new_figure(9.5, 3.6)
    axes = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.14, wspace=0.22)
    for ax, name, what in zip(axes, ("purity_ratio", "spread_ratio"),
                              ("class purity", "semantic spread (WordNet)"), strict=True):
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="random k-image sets")
        curves(ax, points[points["name"] == name], styles)
        ax.set_xlabel("layer")
        ax.set_title(f"{what} / random sets")
    axes[0].set_ylabel("mean over features (95% interval)")
    side_legend(figure, axes, fontsize=7.5)
    return figure


def _cell(group: str, row: str, column: str, estimate: Estimate, **extra) -> dict:
    return {"group": group, "row": row, "column": column, "value": estimate.mean,
            "ci_low": estimate.low, "ci_high": estimate.high, "paper": math.nan,
            "paper_model": None, "paper_match": None, "n": estimate.n, **extra}


def summary_cells(group: str, label: str, frame: pd.DataFrame,
                  random: dict[str, float]) -> tuple[list[dict], dict[str, Estimate]]:
    """The model's row of the summary table: each measure's mean over all its features with
    an interval, then the random sets' purity and spread; and the estimates by metric."""
    estimates = {name: mean_estimate(frame[name].to_numpy(float))
                 for name, _ in SHOWN if name in frame}
    cells = [_cell(group, label, heading, estimates[name], name=name)
             for name, heading in SHOWN if name in estimates]
    for name in ("purity", "spread"):
        if name in random:
            value = float(random[name])
            cells.append(_cell(group, label, f"random {name}", Estimate(value, value, value, 1),
                               name=name, variant="random"))
    return cells, estimates


def example_rows(data: StudyData, group: RankedTasks) -> list[dict]:
    """Example labels of the model's deepest stored layer: its ``EXAMPLES`` purest features
    among those with a majority class, and the ``EXAMPLES`` with the deepest labels among those
    without one (their top images span classes)."""
    records = []
    for key in group.keys:
        for path in data.files(key, "concepts")["file"]:
            if Path(path).is_file():
                records.append(json.loads(Path(path).read_text()))
    if not records:
        return []
    deepest = max(r["layer"] for r in records)
    picked: list[dict] = []
    for r in (r for r in records if r["layer"] == deepest):
        for i, feature in enumerate(r["features"]):
            top = r["top_classes"][i]
            purity = max(top.count(c) for c in top) / len(top)
            picked.append({"feature": feature, "label": r["label_name"][i],
                           "depth": r["label_depth"][i], "share": r["label_share"][i],
                           "purity": purity, "distinct": len(set(top)),
                           "classes": ", ".join(dict.fromkeys(r["classes"][c] for c in top))})
    purest = sorted((p for p in picked if p["purity"] > 0.5),
                    key=lambda p: (-p["purity"], -p["depth"], p["feature"]))[:EXAMPLES]
    spanning = sorted((p for p in picked if p["purity"] <= 0.5),
                      key=lambda p: (-p["depth"], p["feature"]))[:EXAMPLES]
    return [{**p, "layer": deepest, "kind": kind} for kind, chosen in
            (("purest", purest), ("across classes", spanning)) for p in chosen]


def example_cells(label: str, examples: Sequence[dict]) -> list[dict]:
    """Table cells of the example features: the label in the row, its numbers in columns."""
    cells = []
    for p in examples:
        row = (f"{p['kind']}: layer {p['layer']} feature {p['feature']}: “{p['label']}” "
               f"(top images: {p['classes']})")
        for field, column in _EXAMPLE_COLUMNS:
            cells.append(_cell(label, row, column,
                               Estimate(float(p[field]), math.nan, math.nan, 1)))
    return cells


def verdicts(estimates: dict[str, tuple[str, dict[str, Estimate]]],
             frames: dict[str, pd.DataFrame]) -> list[str]:
    """The claim's two halves, one line each: supervised models' features detect single
    objects (purity above, spread below random sets); CLIP ViTs' span classes (spread ratio
    above the supervised ViTs' pooled features, intervals apart)."""
    single = {label: combine([compare(est["purity_ratio"], 1.0, "above"),
                              compare(est["spread_ratio"], 1.0, "below")])
              for label, (group, est) in estimates.items()
              if group != CLIP and {"purity_ratio", "spread_ratio"} <= set(est)}
    lines = [verdict_line("Supervised models' features detect single objects (purity above "
                          "and spread below random k-image sets, intervals apart)", single)]
    supervised = [frames[label]["spread_ratio"].to_numpy(float)
                  for label, (group, _) in estimates.items()
                  if group == SUPERVISED and "spread_ratio" in frames[label]]
    clips = {label: est for label, (group, est) in estimates.items()
             if group == CLIP and "spread_ratio" in est}
    if clips and not supervised:
        lines.append("CLIP ViTs' features span concepts across classes: undecided (no "
                     "supervised ViT in this study to compare with).")
    elif clips:
        pooled = mean_estimate(np.concatenate(supervised))
        lines.append(verdict_line(
            f"CLIP ViTs' features span concepts across classes (spread / random above the "
            f"supervised ViTs' {pooled}, intervals apart)",
            {label: compare(est["spread_ratio"], pooled, "above")
             for label, est in clips.items()}))
    return lines


def build(ctx: SectionContext) -> None:
    """The paper's sentence and the verdicts, the by-layer figure, the summary table and the
    example labels."""
    done = ctx.done()
    if done is None:
        return
    summary, examples, points = [], [], []
    estimates: dict[str, tuple[str, dict[str, Estimate]]] = {}
    frames: dict[str, pd.DataFrame] = {}
    groups = ranked_tasks(ctx.data, done)
    labels = {group.label: group.model for group in groups}
    for group in groups:
        frame = feature_frame(ctx.data, group)
        if frame.empty:
            ctx.note(f"{group.label}: no per-feature values were stored.")
            continue
        kind = model_group(ctx.data, group.model)
        cells, found = summary_cells(kind, group.label, frame, random_means(ctx.data, group))
        estimates[group.label] = (kind, found)
        frames[group.label] = frame
        summary += cells
        examples += example_cells(group.label, example_rows(ctx.data, group))
        points.append(layer_curves(group.label, frame))
    if not frames:
        return
    ctx.note(PAPER)
    for line in verdicts(estimates, frames):
        ctx.note(line)
    _add_outputs(ctx, {label: m for label, m in labels.items() if label in frames}, summary,
                 examples, points)


def _add_outputs(ctx: SectionContext, models: dict[str, str], summary: list[dict],
                 examples: list[dict], points: list[pd.DataFrame]) -> None:
    """The figure (a line per label of ``models``: label -> model) and the two tables (the
    summary sorted by model group)."""
    styles = line_styles((label, ctx.data.family(model)) for label, model in models.items())
    styles.update({label: ctx.styles[label] for label in models if label in ctx.styles})
    ctx.figure(layer_figure(pd.concat(points, ignore_index=True), styles),
               "concepts_by_layer",
               "Class purity and semantic spread of each layer's features' top-k images, as a "
               "ratio to random k-image sets of the same dataset (dashed: equal to random); "
               "mean over features with a 95% bootstrap interval.")
    frame = cell_frame(summary)
    frame = frame.assign(_g=frame["group"].map(GROUPS.index)).sort_values(
        "_g", kind="stable").drop(columns="_g")
    ctx.table(Table("concepts_summary", "Concepts: purity and spread of features' top images",
                    frame, "Mean over every measured feature (all layers) with a 95% bootstrap "
                    "interval over features; ratios divide by the mean of random k-image sets "
                    "(the last two columns). Rows grouped: CLIP ViTs, supervised ViTs, CNNs.",
                    interval_decimals=2))
    if examples:
        ctx.table(Table("concepts_examples", "Concepts: example labels (deepest layer)",
                        cell_frame(examples), "A feature's label: the deepest WordNet synset "
                        "covering at least half of its top-k images (share), with its depth; "
                        "every feature's label is in the task's `concepts` artifacts."))


SECTION = ReportSection(
    id="concepts",
    title="Concepts: what features' top images share in WordNet",
    intro=(
        "For each feature, the classes of its k most activating dataset images, placed in "
        "WordNet 3.0's noun hierarchy: class purity (share of the most common class), semantic "
        "spread (mean shortest-path distance between the images' classes) and a label (the "
        "deepest synset covering at least half of them), each beside random k-image sets of "
        "the same dataset (docs/concepts.md). A feature detecting a single object has purity "
        "above and spread below random sets; a feature for a concept that spans objects (the "
        "paper's CLIP neurons) has low purity and high spread."),
    build=build,
    order=17,
)
