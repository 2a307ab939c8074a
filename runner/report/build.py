"""Build a study's report: read its rows once, build each kind's section, write the files.

The sections are those the installed kinds contribute (``Kind.report_section``), in their
``order`` (the built-in kinds follow the paper: feature visualizations, token mixing,
foreground/background, low-pass, spatial information), then the list of tasks. A section whose
kind the study lacks, or whose tasks are not done, shows a note instead; a section that fails
to build (or whose kind cannot be imported) shows its error and the others are still written.
The builder knows no kind by name.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from runner import kinds as registry
from runner import results as results_db
from runner.kinds.reporting import ReportSection, SectionContext
from runner.present.atlas_links import atlas_study
from runner.present.figures import line_styles
from runner.present.tables import md_escape, to_markdown
from runner.present.text import counters
from runner.report.html import FigureFile, Section, TableBlock, plain_table_html, render_page
from runner.report.writer import KindSection, ReportWriter
from runner.results.study import StudyData

_TASKS_INTRO = "Every task of the study with its status, run time, counters and error."


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
    atlas_dir: str | Path | None = None,
) -> Path:
    """Write ``out_dir``/index.html (+ tables/*.csv|md, figures/*.png, report.md); return it.
    When ``atlas_dir`` holds this study's atlas (``vitstudy atlas``), the sections link into
    it."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atlas = atlas_href(study, out, atlas_dir)
    data = StudyData.load(study, task_keys, engine, store_root, model_names)
    writer = ReportWriter(out)
    styles = line_styles(
        (data.labels[k], data.family(m))
        for k, m in zip(data.tasks["key"], data.tasks["model"], strict=True) if isinstance(m, str))
    sections = []
    for kind, spec in kind_sections():
        section = Section(spec.id, spec.title, spec.intro)
        context = KindSection(kind, data, styles, writer, section, n_boot=n_boot, seed=seed,
                              atlas=atlas)
        sections.append(_built(section, lambda s=spec, c=context: s.build(c)))
    tasks = Section("tasks", "Tasks", _TASKS_INTRO)
    sections.append(_built(tasks, lambda: _tasks(data, writer, tasks)))
    seconds = time.perf_counter() - started
    writer.text("report.md", _markdown(data, sections))
    index = writer.text("index.html", render_page(
        f"{study}: what do vision transformers learn?",
        _subtitle(data), _header_html(data, engine, atlas), sections,
        f"Built by vitstudy in {seconds:.1f} s from the result database; nothing was "
        "recomputed. Intervals: 95% percentile bootstrap over images "
        f"({n_boot} resamples, seed {seed}). "
        "† the paper measured other weights of the same architecture."))
    writer.finish()
    return out / index


def atlas_href(study: str, out: Path, atlas_dir: str | Path | None) -> str | None:
    """The link from the report's page in ``out`` to the atlas root ``atlas_dir``, when that
    folder holds the atlas of ``study``; else None."""
    if atlas_dir is None or atlas_study(atlas_dir) != study:
        return None
    return Path(os.path.relpath(Path(atlas_dir).resolve(), out.resolve())).as_posix()


def kind_sections() -> list[tuple[str, ReportSection]]:
    """(kind name, its section) of every installed kind that has one, by ``order`` then id. A
    kind that cannot be imported gets a section that shows why."""
    found = []
    for name in registry.available_kinds():
        try:
            section = registry.get_kind(name).report_section()
            if section is not None and not isinstance(section, ReportSection):
                raise TypeError(f"kind {name!r}: report_section() must return a ReportSection "
                                f"or None, not {section!r}")
        except Exception as error:  # noqa: BLE001 - a broken kind must not take the report down
            section = _unloadable(name, error)
        if section is not None:
            found.append((name, section))
    return sorted(found, key=lambda pair: (pair[1].order, pair[1].id))


def _unloadable(name: str, error: Exception) -> ReportSection:
    """A section standing for a kind whose own section could not be loaded: building it
    raises the error, which the report then shows."""

    def build(_ctx: SectionContext) -> None:
        raise error

    return ReportSection(id=f"kind-{name}", title=f"Kind {name}",
                         intro=f"The section of the installed kind <code>{escape(name)}</code>.",
                         build=build)


def _built(section: Section, build: Callable[[], None]) -> Section:
    """``section`` after ``build()``, or with the error it raised (the report goes on)."""
    try:
        build()
    except Exception as error:  # noqa: BLE001 - one broken section must not take the report down
        section.notes.append(f"This section could not be built: {error!r}.")
        section.blocks.append(f"<pre>{escape(traceback.format_exc())}</pre>")
    return section


def _tasks(data: StudyData, writer: ReportWriter, section: Section) -> None:
    """Every task with its status, run time, counters and first line of error; notes on
    planned tasks never run and on stored arrays the sections could not use."""
    if data.missing_keys:
        section.notes.append(f"{len(data.missing_keys)} planned tasks have never run (not in "
                             "the database).")
    for key, why in data.damaged.items():  # found while the sections above read the arrays
        section.notes.append(f"{data.labels[key]} ({key[:10]}): {why}.")
    frame = pd.DataFrame({
        "kind": data.tasks["kind"],
        "task": [data.labels[k] for k in data.tasks["key"]],
        "key": data.tasks["key"].str[:10],
        "status": data.tasks["status"],
        "seconds": data.tasks["seconds"].round(1),
        "counters": [counters(i) for i in data.tasks["info"]],
        "error": [_first_line(e) for e in data.tasks["error"]],
    })
    csv = writer.csv(frame, "tables/tasks.csv")
    section.blocks.append(plain_table_html(frame, {"status": {
        "failed": "status-failed", "done": "status-done"}}))
    section.blocks.append(f'<p class="files">Files: <a href="{csv}">CSV</a></p>')


def _first_line(error: Any, limit: int = 160) -> str:
    """The first line of a stored error, shortened: the exception's type and message (the
    lines after it are the innermost frames of its traceback)."""
    lines = error.strip().splitlines() if isinstance(error, str) else []
    return lines[0][:limit] if lines else ""


def _subtitle(data: StudyData) -> str:
    counts = data.tasks["status"].value_counts()
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    return (f"vitstudy report · {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} · "
            f"{len(data.tasks)} tasks ({states or 'none'})")


def _header_html(data: StudyData, engine: Engine | str, atlas: str | None = None) -> str:
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
    link = "" if atlas is None else (
        f"<p>Browse every feature in the study's <a href=\"{escape(atlas)}/index.html\">feature "
        "atlas</a>.</p>")
    return (f"{html}{link}<p class='caption'>Database <code>{escape(str(url))}</code> · artifact "
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
    md = md_escape
    lines = [f"# {md(data.study)}", ""]
    for section in sections:
        lines += [f"## {md(section.title)}", ""]
        lines += [f"> {md(note)}" for note in section.notes]
        for block in section.blocks:
            if isinstance(block, TableBlock):
                lines.append(to_markdown(block.table))
            elif isinstance(block, FigureFile):
                lines += [f"![{md(block.caption)}]({block.path})", ""]
        if section.id == "tasks":
            lines.append("Task list: [tables/tasks.csv](tables/tasks.csv)")
        lines.append("")
    return "\n".join(lines)
