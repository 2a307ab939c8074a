"""The feature-visualization section of the report (Figures 1-2): per task, its stored panels
by layer and feature, and the final objective of every visualized feature."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.panels import PanelCell, layer_grid
from runner.present.tables import Table, cell_frame, metric_cell
from runner.present.text import slug
from runner.results.study import StudyData

KIND = "visualize"


def visualize_activations(data: StudyData) -> pd.DataFrame:
    """The final objective (mean patch activation) of every visualized feature."""
    cells = []
    for key in data.done(KIND)["key"]:
        rows = data.task_metrics(key, "activation")
        rows = rows[rows["variant"].isna()].sort_values(["layer", "feature"])
        cells += [metric_cell(r, data.labels[key], f"layer {int(r.layer)}",
                              f"feature {int(r.feature)}", None) for r in rows.itertuples()]
    return cell_frame(cells)


def _panel_cells(data: StudyData, key: str, role: str) -> list[PanelCell]:
    """The task's stored images of ``role``, each with its feature's final objective."""
    activations = data.task_metrics(key, "activation")
    final = activations[activations["variant"].isna()]
    value = {(int(r.layer), int(r.feature)): float(r.value) for r in final.itertuples()}
    return [PanelCell(int(f.layer), int(f.feature), Path(f.file),
                      value.get((int(f.layer), int(f.feature))))
            for f in data.files(key, role).itertuples()
            if pd.notna(f.layer) and pd.notna(f.feature)]


def build(ctx: SectionContext) -> None:
    """A layer-by-feature grid of panels per task, then the objectives as a (folded) table."""
    done = ctx.done()
    if done is None:
        return
    data = ctx.data
    for task in done.itertuples():
        label = data.labels[task.key]
        role = "panel" if not data.files(task.key, "panel").empty else "image"
        if data.files(task.key, role).empty:
            ctx.note(f"{label}: no images were stored.")
            continue
        what = ("optimized image | most-activating images | their activation maps"
                if role == "panel" else "optimized images (no dataset given, so no top images)")
        ctx.image(
            layer_grid(_panel_cells(data, task.key, role)), f"features_{slug(label)}",
            f"{label}: rows are layers (shallow at the top), columns are feed-forward features; "
            f"each panel: {what}; 'act' is the final objective.")
    ctx.table(Table("visualize_activation", "Final objective per visualized feature (table)",
                    visualize_activations(data), decimals=3), folded=True)


SECTION = ReportSection(
    id="features",
    title="Feature visualizations (Figures 1-2)",
    intro=(
        "Each feature is one channel of a block's feed-forward layer (the GELU output), made "
        "visible by optimizing an image to excite it and paired with the dataset images that "
        "excite it most and their patch-wise activation maps (paper, Figure 2). Read each "
        "model top to bottom: the paper finds edges and textures in early layers, then "
        "patterns, parts and whole objects (Figure 1)."),
    build=build,
    order=10,
)
