"""The maps-against-boxes section of the report (issue #14, claim 2; paper section 3,
contribution II): per model and layer, the share of the top images' activation-map mass inside
the object boxes and the pointing-game rate, each against chance (the boxes' share of the
input), with intervals over features, models side by side, and a one-line verdict per model."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from runner.kinds.ranked_tasks import RankedTasks, ranked_tasks
from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.figures import band, line_styles, new_figure, side_legend
from runner.present.tables import Table, cell_frame
from runner.present.verdicts import Estimate, Verdict, combine, compare, mean_estimate, verdict_line
from runner.results.study import StudyData

KIND = "map_boxes"
MEASURES = ("box_share", "pointing_hit", "chance")
#: (measure, column heading, panel title) of what is compared with chance.
SHOWN = (("box_share", "box share", "share of positive map mass inside the boxes"),
         ("pointing_hit", "pointing hit", "pointing game: map peak inside a box"))
PAPER = ("Paper (section 3, contribution II): \"patch-wise image activation patterns for ViT "
         "features essentially behave like saliency maps, highlighting the regions of the image "
         "a given feature attends to. This behavior persists even for relatively deep layers\"; "
         "the last layer departs from it (its maps are fairly uniform, section 4).")

LayerEstimates = dict[int, dict[str, Estimate]]


def feature_frame(data: StudyData, group: RankedTasks) -> pd.DataFrame:
    """One row per (layer, feature) of a model's tasks, a column per measure."""
    rows = pd.concat([data.task_metrics(k) for k in group.keys])
    rows = rows[rows["name"].isin(MEASURES) & rows["feature"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["layer", "feature", *MEASURES])
    wide = rows.pivot_table(index=["layer", "feature"], columns="name", values="value",
                            aggfunc="first")
    return wide.reset_index().astype({"layer": int})


def model_depth(data: StudyData, group: RankedTasks, frame: pd.DataFrame) -> int:
    """The model's number of blocks (stages), as its tasks recorded it; else the deepest
    measured layer + 1."""
    rows = pd.concat([data.task_metrics(k, "depth") for k in group.keys])
    return int(rows["value"].max()) if not rows.empty else int(frame["layer"].max()) + 1


def layer_estimates(frame: pd.DataFrame) -> LayerEstimates:
    """Per layer, each measure's mean over the layer's features with a bootstrap interval."""
    return {int(layer): {name: mean_estimate(rows[name].to_numpy(float)) for name in MEASURES}
            for layer, rows in frame.groupby("layer", sort=True)}


def judged_layers(layers: list[int], depth: int) -> list[int] | None:
    """The layers a model's verdict rests on: every measured one but the last block (the
    paper's exception); None when none of them is in the deeper half of the model."""
    judged = [layer for layer in layers if layer != depth - 1]
    return judged if any(layer >= depth / 2 for layer in judged) else None


def model_verdict(estimates: LayerEstimates, depth: int, measure: str) -> Verdict:
    """``measure`` above chance (intervals apart) in every judged layer."""
    judged = judged_layers(sorted(estimates), depth)
    if judged is None:
        return "undecided"
    return combine(compare(estimates[layer][measure], estimates[layer]["chance"], "above")
                   for layer in judged)


def verdicts(found: dict[str, tuple[LayerEstimates, int]]) -> list[str]:
    """The claim's line (box share) and the pointing game's, one verdict per model."""
    claim = ("Activation maps highlight the object, deep layers included (box share above "
             "chance, intervals apart, in every measured layer but the last block, at least "
             "one in the deeper half)")
    pointing = "The maps' peaks fall on the object (pointing hits above chance, same layers)"
    return [verdict_line(claim, {label: model_verdict(est, depth, "box_share")
                                 for label, (est, depth) in found.items()}),
            verdict_line(pointing, {label: model_verdict(est, depth, "pointing_hit")
                                    for label, (est, depth) in found.items()})]


def _cell(label: str, row: str, column: str, estimate: Estimate, scale: float = 100.0) -> dict:
    return {"group": label, "row": row, "column": column, "value": estimate.mean * scale,
            "ci_low": estimate.low * scale, "ci_high": estimate.high * scale,
            "paper": math.nan, "paper_model": None, "paper_match": None, "n": estimate.n}


def table_cells(label: str, estimates: LayerEstimates, depth: int) -> list[dict]:
    """The model's rows of the table: per layer, box share, pointing hit and chance in percent,
    and the number of features measured."""
    cells = []
    for layer, est in estimates.items():
        row = f"layer {layer}" + (" (last block)" if layer == depth - 1 else "")
        cells += [_cell(label, row, f"{heading} (%)", est[name]) for name, heading, _ in SHOWN]
        cells.append(_cell(label, row, "chance (%)", est["chance"]))
        n = float(est["box_share"].n)
        cells.append(_cell(label, row, "features", Estimate(n, math.nan, math.nan, 1), 1.0))
    return cells


def layer_points(label: str, estimates: LayerEstimates) -> pd.DataFrame:
    """Long-form points for the figure: per layer and measure, the mean and its interval."""
    return pd.DataFrame([{"label": label, "name": name, "x": float(layer), "value": e.mean,
                          "ci_low": e.low, "ci_high": e.high}
                         for layer, est in estimates.items() for name, e in est.items()])


def layer_figure(points: pd.DataFrame, styles: dict) -> Figure:
    """Two panels against the layer, box share and pointing hits, each model's line with its
    interval band and its own chance level dotted in the same colour."""
    figure = new_figure(9.5, 3.6)
    axes = figure.subplots(1, 2, sharey=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.88, bottom=0.14, wspace=0.08)
    for ax, (name, _, title) in zip(axes, SHOWN, strict=True):
        for label, rows in points.groupby("label", sort=False):
            style = styles[label]
            chance = rows[rows["name"] == "chance"].sort_values("x")
            ax.plot(chance["x"].to_numpy(float), chance["value"].to_numpy(float),
                    **{**style, "linestyle": ":", "marker": None})
            part = rows[rows["name"] == name].sort_values("x")
            x = part["x"].to_numpy(float)
            ax.plot(x, part["value"].to_numpy(float), label=label, **style)
            band(ax, x, part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float),
                 style["color"])
        ax.set_xlabel("layer (block index)")
        ax.set_title(title)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("mean over features (95% interval)")
    side_legend(figure, axes, fontsize=7.5)
    return figure


def _left_out(data: StudyData, group: RankedTasks) -> str | None:
    """``label: left out N images without boxes, ...``, or None when nothing was left out."""
    info = [data.info(key) for key in group.keys]
    counts = {"no_boxes": int(info[0].get("no_boxes", 0))}  # each task sees the whole dataset
    for name in ("maps_boxes_cropped_out", "maps_without_positive_mass"):
        counts[name] = sum(int(i.get(name, 0)) for i in info)
    what = {"no_boxes": "images without boxes",
            "maps_boxes_cropped_out": "maps whose boxes the crop cut away",
            "maps_without_positive_mass": "maps with no positive activation"}
    parts = [f"{n} {what[name]}" for name, n in counts.items() if n]
    return f"{group.label}: left out {', '.join(parts)}." if parts else None


def build(ctx: SectionContext) -> None:
    """The paper's sentence and the verdicts, the by-layer figure and the per-layer table."""
    done = ctx.done()
    if done is None:
        return
    data, found, cells, points, models = ctx.data, {}, [], [], {}
    for group in ranked_tasks(data, done):
        frame = feature_frame(data, group)
        if frame.empty:
            ctx.note(f"{group.label}: no feature could be measured (see the task counters).")
            continue
        depth, estimates = model_depth(data, group, frame), layer_estimates(frame)
        found[group.label] = (estimates, depth)
        cells += table_cells(group.label, estimates, depth)
        points.append(layer_points(group.label, estimates))
        models[group.label] = group.model
        left_out = _left_out(data, group)
        if left_out:
            ctx.note(left_out)
    if not found:
        return
    ctx.note(PAPER)
    for line in verdicts(found):
        ctx.note(line)
    styles = line_styles((label, data.family(model)) for label, model in models.items())
    styles.update({label: ctx.styles[label] for label in models if label in ctx.styles})
    ctx.figure(layer_figure(pd.concat(points, ignore_index=True), styles), "map_boxes_by_layer",
               "Per layer, over each feature's most activating images with boxes: the share of "
               "the activation map's positive mass inside the boxes (left) and the pointing-game "
               "hits (right); dotted, in the model's colour: chance, the boxes' share of the "
               "input. Mean over features with a 95% bootstrap interval.")
    ctx.table(Table("map_boxes", "Activation maps against object boxes, by layer",
                    cell_frame(cells), "Percent, mean over the layer's features with a 95% "
                    "bootstrap interval over features; each feature's value is the mean over its "
                    "k most activating images that have boxes (docs/maps.md).", decimals=1))


SECTION = ReportSection(
    id="map-boxes",
    title="Activation maps against object boxes (claim 2)",
    intro=(
        "For each feature, its k most activating images among those with boxes of their class; "
        "each image's patch-wise activation map is compared with the boxes in the model's input "
        "frame: the share of the map's positive mass inside the boxes, and the pointing game "
        "(the map's peak patch inside a box). Chance is the boxes' share of the input: what a "
        "uniform map, or a peak at a random patch, scores (docs/maps.md). A feature that "
        "detects the object scores above chance; one that detects the background (the paper's "
        "gravel) below it; a near-uniform map, as the paper finds in the last block, at chance."),
    build=build,
    order=18,
)
