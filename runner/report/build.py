"""Build a study's report: read its rows once, build each section, write files and the page.

Sections follow the paper: feature visualizations (Figures 1-2), last-layer token mixing
(Table 1, Figure 6), foreground/background (Table 2), the low-pass sweep, spatial information
per channel (appendix F), then the tasks. A section whose kind the study lacks, or whose tasks
are not done, shows a note instead; a section that fails to build shows its error and the
others are still written.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from runner import results as results_db
from runner.report import figures, tables
from runner.report.html import FigureFile, Section, TableBlock, plain_table_html, render_page
from runner.report.panels import PanelCell, layer_grid
from runner.report.study import StudyData
from runner.report.tables import Table

MANIFEST = ".report-files.json"
#: Numbers in a task's ``info`` that are run settings (provenance), not counters.
_SETTINGS = frozenset({"batch_size", "workers", "seed", "depth"})


class ReportWriter:
    """Writes the report's files under one folder and remembers them (for the manifest)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[str] = []

    def _path(self, relative: str) -> Path:
        path = self.out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        self.written.append(relative)
        return path

    def csv(self, frame: pd.DataFrame, relative: str) -> str:
        """Write ``frame`` as CSV, text cells neutralised against spreadsheet formulas."""
        tables.csv_safe(frame).to_csv(self._path(relative), index=False)
        return relative

    def text(self, relative: str, content: str) -> str:
        self._path(relative).write_text(content, encoding="utf-8")
        return relative

    def table(self, table: Table, *, folded: bool = False) -> TableBlock:
        """The table as ``tables/<name>.csv`` (long form) and ``tables/<name>.md``."""
        csv = self.csv(table.cells, f"tables/{table.name}.csv")
        markdown = self.text(f"tables/{table.name}.md", tables.to_markdown(table))
        return TableBlock(table, csv, markdown, folded)

    def figure(self, figure: Any, name: str, caption: str) -> FigureFile:
        relative = f"figures/{name}.png"
        figures.save(figure, self._path(relative))
        return FigureFile(relative, caption)

    def image(self, image: Any, name: str, caption: str) -> FigureFile:
        relative = f"figures/{name}.png"
        image.save(self._path(relative), format="PNG", optimize=False)
        return FigureFile(relative, caption)

    def finish(self) -> None:
        """Delete files an earlier build wrote that this one did not, then save the manifest."""
        manifest = self.out_dir / MANIFEST
        if manifest.is_file():
            for relative in set(json.loads(manifest.read_text())) - set(self.written):
                stale = self.out_dir / relative
                if stale.is_file() and stale.resolve().is_relative_to(self.out_dir.resolve()):
                    stale.unlink()
        manifest.write_text(json.dumps(sorted(set(self.written)), indent=1))


def build_report(
    study: str,
    task_keys: list[str] | None,
    engine: Engine | str,
    store_root: str | Path,
    out_dir: str | Path,
    *,
    model_names: dict[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> Path:
    """Write ``out_dir``/index.html (+ tables/*.csv|md, figures/*.png, report.md); return it."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = StudyData.load(study, task_keys, engine, store_root, model_names)
    writer = ReportWriter(out)
    context = _Context(data, writer, n_boot, seed)
    builders: list[tuple[str, str, Callable[[_Context, Section], None]]] = [
        ("features", "Feature visualizations (Figures 1-2)", _features),
        ("token-mixing", "Last-layer token mixing (Table 1, Figure 6)", _token_mixing),
        ("fgbg", "Foreground and background (Table 2)", _fgbg),
        ("lowpass", "Low-pass filtering", _lowpass),
        ("spatial", "Spatial information per channel (appendix F)", _spatial),
        ("tasks", "Tasks", _tasks),
    ]
    sections = []
    for section_id, title, build in builders:
        section = Section(section_id, title, _INTROS[section_id])
        try:
            build(context, section)
        except Exception as error:  # one broken section must not take the report down
            section.notes.append(f"This section could not be built: {error!r}.")
            section.blocks.append(f"<pre>{escape(traceback.format_exc())}</pre>")
        sections.append(section)
    seconds = time.perf_counter() - started
    writer.text("report.md", _markdown(data, sections))
    index = writer.text("index.html", render_page(
        f"{study}: what do vision transformers learn?",
        _subtitle(data), _header_html(data, engine), sections,
        f"Built by vitstudy in {seconds:.1f} s from the result database; nothing was "
        "recomputed. Intervals: 95% percentile bootstrap over images "
        f"({n_boot} resamples, seed {seed}). "
        "† the paper measured other weights of the same architecture."))
    writer.finish()
    return out / index


class _Context:
    """What every section builder shares."""

    def __init__(self, data: StudyData, writer: ReportWriter, n_boot: int, seed: int) -> None:
        self.data, self.writer, self.n_boot, self.seed = data, writer, n_boot, seed
        self.styles = figures.line_styles(
            (data.labels[k], data.family(m)) for k, m in zip(data.tasks["key"],
                                                               data.tasks["model"], strict=True)
            if isinstance(m, str))

    def intervals(self, kind: str) -> pd.DataFrame:
        return tables.with_intervals(self.data, kind, n_boot=self.n_boot, seed=self.seed)


def _require(ctx: _Context, section: Section, kind: str) -> pd.DataFrame | None:
    """The kind's done tasks, or None after noting why the section is empty or partial."""
    data = ctx.data
    of_kind = data.tasks[data.tasks["kind"] == kind]
    if of_kind.empty:
        section.notes.append(f"This study has no `{kind}` task, so this section is skipped.")
        return None
    done = data.done(kind)
    pending = of_kind[of_kind["status"] != "done"]
    if len(pending):
        states = ", ".join(f"{n} {s}" for s, n in pending["status"].value_counts().items())
        section.notes.append(f"{len(pending)} of {len(of_kind)} `{kind}` tasks are not done "
                             f"({states}); they are left out. See Tasks below.")
    return None if done.empty else done


# --------------------------------------------------------------------------- sections


def _features(ctx: _Context, section: Section) -> None:
    done = _require(ctx, section, "visualize")
    if done is None:
        return
    data = ctx.data
    for task in done.itertuples():
        role = "panel" if not data.files(task.key, "panel").empty else "image"
        files = data.files(task.key, role)
        if files.empty:
            section.notes.append(f"{data.labels[task.key]}: no images were stored.")
            continue
        activations = data.task_metrics(task.key, "activation")
        final = activations[activations["variant"].isna()]
        value = {(int(r.layer), int(r.feature)): float(r.value) for r in final.itertuples()}
        cells = [PanelCell(int(f.layer), int(f.feature), Path(f.file),
                           value.get((int(f.layer), int(f.feature))))
                 for f in files.itertuples() if pd.notna(f.layer) and pd.notna(f.feature)]
        what = ("optimized image | most-activating images | their activation maps"
                if role == "panel" else "optimized images (no dataset given, so no top images)")
        section.blocks.append(ctx.writer.image(
            layer_grid(cells), f"features_{_slug(data.labels[task.key])}",
            f"{data.labels[task.key]}: rows are layers (shallow at the top), columns are "
            f"feed-forward features; each panel: {what}; 'act' is the final objective."))
    table = Table("visualize_activation", "Final objective per visualized feature (table)",
                  tables.visualize_activations(data), decimals=3)
    section.blocks.append(ctx.writer.table(table, folded=True))


def _token_mixing(ctx: _Context, section: Section) -> None:
    done = _require(ctx, section, "cls_isolation")
    if done is None:
        return
    data, writer = ctx.data, ctx.writer
    rows = ctx.intervals("cls_isolation")
    section.blocks.append(writer.table(Table(
        "table1", "Table 1: accuracy with the CLS token isolated and with the head on single "
        "patches", tables.table1(data, rows),
        "Each cell: measured accuracy (%) [95% bootstrap interval], and the paper's ViT-B/16 "
        "number where the model is one the paper measured.")))
    curve = tables.isolation_curve(data, rows)
    if not curve.empty:
        natural = rows[(rows["variant"] == "natural") & rows["name"].isin(tables.ACCURACY_NAMES)]
        section.blocks.append(writer.figure(
            figures.isolation_curve_figure(
                curve.assign(label=curve["group"]),
                natural.assign(label=[data.labels[k] for k in natural["task_key"]]),
                ctx.styles),
            "isolation_curve",
            "Accuracy when the CLS token meets the patch tokens only from block L on (L = 0: "
            "the unmodified model). The paper's claim: accuracy stays high until L = depth-1, "
            "because the CLS token gathers global information only in the last block."))
        section.blocks.append(writer.table(Table(
            "isolation_curve", "Accuracy against insertion layer L (table)", curve),
            folded=True))
    grids = [(data.labels[k], grid) for k in done["key"]
             if (grid := tables.patch_accuracy_grid(data, k)) is not None]
    if grids:
        section.blocks.append(writer.figure(
            figures.patch_heatmap_figure([(label, grid[0]) for label, grid in grids]),
            "figure6_patch_accuracy",
            "Figure 6: top-1 accuracy of the unchanged classification head applied to each patch "
            "token alone, on the patch grid (red box: the best position, 'Patch Maximum'). A "
            "flat map means the last block gave every token the same information."))
        section.blocks.append(writer.table(Table(
            "patch_accuracy", "Per-position accuracy (table)",
            tables.patch_positions(data, rows)), folded=True))
    else:
        section.notes.append("No per-position accuracy was stored (patch heads off), so "
                             "Figure 6 is skipped.")


def _fgbg(ctx: _Context, section: Section) -> None:
    done = _require(ctx, section, "fgbg")
    if done is None:
        return
    data, writer = ctx.data, ctx.writer
    rows = ctx.intervals("fgbg")
    counts = ", ".join(f"{data.labels[k]} {int(v)}" for k, v in zip(
        *_metric_values(data, done, "n_images"), strict=True))
    section.blocks.append(writer.table(Table(
        "table2", "Table 2: top-5 accuracy with only the foreground or only the background",
        tables.table2(data, rows),
        "Full image: raw top-5 (%). Foreground, Background: top-5 on the masked images as % of "
        f"the full-image top-5. Images with boxes evaluated: {counts}.")))
    section.blocks.append(writer.table(Table(
        "fgbg_raw", "Raw top-1 and top-5 accuracy on full, foreground-only and background-only "
        "images", tables.fgbg_raw(data, rows)), folded=True))


def _lowpass(ctx: _Context, section: Section) -> None:
    done = _require(ctx, section, "lowpass")
    if done is None:
        return
    data, writer = ctx.data, ctx.writer
    points = tables.lowpass_points(data, ctx.intervals("lowpass"))
    if points.empty:
        section.notes.append("The low-pass tasks stored no filtered accuracy.")
        return
    for variant in dict.fromkeys(points["variant"]):
        subset = points[points["variant"] == variant]
        section.blocks.append(writer.figure(
            figures.filter_curves_figure(subset.assign(label=subset["group"]), variant,
                                         ctx.styles),
            f"{variant}_curves",
            f"Accuracy on {variant}-filtered inputs against the filter radius, raw (left) and "
            "as % of the unfiltered accuracy (right). Solid/round: ViTs; dashed/square: CNNs. "
            "The paper's claim: ViT accuracy falls far less than CNN accuracy as high "
            "frequencies are removed."))
    section.blocks.append(writer.table(Table("lowpass", "Accuracy per radius (table)", points),
                                       folded=True))


def _spatial(ctx: _Context, section: Section) -> None:
    done = _require(ctx, section, "spatial_drop")
    if done is None:
        return
    data, writer = ctx.data, ctx.writer
    curves = tables.spatial_curves(data)
    linearity = tables.spatial_linearity(data)
    for key in done["key"]:
        label = data.labels[key]
        rows = curves[curves["task_key"] == key]
        if rows.empty:
            counters = _counters(data.tasks.loc[data.tasks["key"] == key, "info"].iloc[0])
            section.notes.append(f"{label}: no per-layer curves were stored"
                                 + (f" (task counters: {counters})." if counters else "."))
            continue
        section.blocks.append(writer.figure(
            figures.spatial_drop_figure(rows, linearity[linearity["task_key"] == key], label),
            f"spatial_drop_{_slug(label)}",
            f"{label}: blanking x% of a feature's active patches, the number of active patches "
            "and their activation sum relative to the initial image (mean over the layer's "
            "features). Linear (R² near 1) means the channel keeps spatial information; the "
            "paper finds this in every layer but the last."))
    section.blocks.append(writer.table(Table(
        "spatial_linearity", "Linearity per layer (R² of a line through the layer-mean curve)",
        linearity, decimals=3)))


def _tasks(ctx: _Context, section: Section) -> None:
    data = ctx.data
    if data.missing_keys:
        section.notes.append(f"{len(data.missing_keys)} planned tasks have never run (not in "
                             "the database).")
    for key, why in data.damaged.items():  # found while the sections above read the arrays
        section.notes.append(f"{data.labels[key]} ({key[:10]}): {why}, so its intervals are "
                             "left out; `vitstudy verify --mark-stale` makes the next run redo it.")
    frame = pd.DataFrame({
        "kind": data.tasks["kind"],
        "task": [data.labels[k] for k in data.tasks["key"]],
        "key": data.tasks["key"].str[:10],
        "status": data.tasks["status"],
        "seconds": data.tasks["seconds"].round(1),
        "counters": [_counters(i) for i in data.tasks["info"]],
        "error": [_first_line(e) for e in data.tasks["error"]],
    })
    csv = ctx.writer.csv(frame, "tables/tasks.csv")
    section.blocks.append(plain_table_html(frame, {"status": {
        "failed": "status-failed", "done": "status-done"}}))
    section.blocks.append(f'<p class="files">Files: <a href="{csv}">CSV</a></p>')


def _first_line(error: Any, limit: int = 160) -> str:
    """The first line of a stored error, shortened: the exception's type and message (the
    lines after it are the innermost frames of its traceback)."""
    lines = error.strip().splitlines() if isinstance(error, str) else []
    return lines[0][:limit] if lines else ""


def _counters(info: Any) -> str:
    parsed = json.loads(info) if isinstance(info, str) and info else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(parsed.items())
                     if isinstance(v, int | float) and v and k not in _SETTINGS)


def _metric_values(data: StudyData, done: pd.DataFrame, name: str) -> tuple[list, list]:
    keys, values = [], []
    for key in done["key"]:
        rows = data.task_metrics(key, name)
        if not rows.empty:
            keys.append(key)
            values.append(rows["value"].iloc[0])
    return keys, values


# ----------------------------------------------------------------------------- framing

_INTROS = {
    "features": (
        "Each feature is one channel of a block's feed-forward layer (the GELU output), made "
        "visible by optimizing an image to excite it and paired with the dataset images that "
        "excite it most and their patch-wise activation maps (paper, Figure 2). Read each "
        "model top to bottom: the paper finds edges and textures in early layers, then "
        "patterns, parts and whole objects (Figure 1)."),
    "token-mixing": (
        "<b>Isolating CLS</b>: the CLS token runs alone through blocks [0, L), the patch tokens "
        "without it; both meet from block L on. <b>Patch Average / Maximum</b>: the unchanged "
        "classification head applied to each patch token on its own; the mean over positions "
        "and the best position. <b>Head on mean patch token</b>: the head on the average patch "
        "token (the authors' code). The paper (ViT-B/16): accuracy stays high when CLS joins "
        "only at the last block, and single patches classify almost as well as CLS: the last "
        "block mixes tokens like global pooling."),
    "fgbg": (
        "Background image: every box of the image's class blacked out; foreground image: only "
        "the boxes kept. The masking happens at the image's own resolution, before resize and "
        "crop. The paper's claim: ViTs beat CNNs with the background only and with the "
        "foreground only. The paper ran on ImageNet <i>training</i> images with boxes, hence "
        "its high full-image accuracy."),
    "lowpass": (
        "An ideal circular low-pass filter in the centred 2-D FFT of each channel of the "
        "model-sized input keeps frequencies up to radius r cycles per image (this project's "
        "definition; the paper publishes none). High-pass removes them instead; the Gaussian "
        "option uses sigma in cycles."),
    "spatial": (
        "For each feature, its most-activating images; patches whose activation exceeds 0.5 "
        "are active, the rest are blacked out (the initial image). Dropping x% of the active "
        "patches at random, a channel that keeps spatial information loses count and "
        "activation in proportion: a straight line."),
    "tasks": "Every task of the study with its status, run time, counters and error.",
}


def _subtitle(data: StudyData) -> str:
    counts = data.tasks["status"].value_counts()
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    return (f"vitstudy report · {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} · "
            f"{len(data.tasks)} tasks ({states or 'none'})")


def _header_html(data: StudyData, engine: Engine | str) -> str:
    models = []
    for model in data.models():
        match = data.paper(model)
        paper = "" if match is None else match.model.label + (
            "" if match.match == "exact" else " † (same architecture, other weights)")
        models.append({"model": model, "library name": data.library_name(model) or "",
                       "family": data.family(model), "in the paper": paper,
                       "tasks done": int(((data.tasks["model"] == model)
                                          & (data.tasks["status"] == "done")).sum())})
    html = plain_table_html(pd.DataFrame(models)) if models else ""
    url = engine if isinstance(engine, str) else engine.url.render_as_string(hide_password=True)
    provenance = _provenance(data, engine)
    return (f"{html}<p class='caption'>Database <code>{escape(str(url))}</code> · artifact "
            f"store <code>{escape(str(data.store_root))}</code>{provenance}</p>")


def _provenance(data: StudyData, engine: Engine | str) -> str:
    run_ids = {int(r) for r in data.tasks["run_id"].dropna()}
    if not run_ids:
        return ""
    runs = results_db.runs(engine)
    runs = runs[runs["id"].isin(run_ids)]
    parts = []
    for run in runs.itertuples():
        sha = _text(run.git_sha, "?")[:10] + (" (dirty)" if run.git_dirty is True else "")
        parts.append(f"run {run.id}: git {sha}, {_text(run.device, 'device ?')}, "
                     f"{_text(run.host, 'host ?')}")
    return " · " + escape("; ".join(parts))


def _text(value: Any, missing: str = "") -> str:
    """A database string, or ``missing`` for NULL."""
    return value if isinstance(value, str) and value else missing


def _markdown(data: StudyData, sections: list[Section]) -> str:
    """report.md: the sections' notes, tables and figures; every name in it escaped."""
    md = tables.md_escape
    lines = [f"# {md(data.study)}", ""]
    for section in sections:
        lines += [f"## {md(section.title)}", ""]
        lines += [f"> {md(note)}" for note in section.notes]
        for block in section.blocks:
            if isinstance(block, TableBlock):
                lines.append(tables.to_markdown(block.table))
            elif isinstance(block, FigureFile):
                lines += [f"![{md(block.caption)}]({block.path})", ""]
        if section.id == "tasks":
            lines.append("Task list: [tables/tasks.csv](tables/tasks.csv)")
        lines.append("")
    return "\n".join(lines)


def _slug(text: str, limit: int = 48) -> str:
    """A file-name stem for any name: its ASCII letters and digits (at most ``limit``), then a
    short hash of the whole name, so names differing only in other characters stay apart."""
    readable = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:limit].strip("_")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable or 'model'}_{digest}"
