"""The whole report: files, links, section notes, stale files, failures kept to one section."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_rows import fill_study, npz_bytes, put

import runner.kinds
from runner import db, results
from runner.errors import KindError
from runner.kinds.base import ArtifactRow, MetricRow
from runner.kinds.fgbg import report as fgbg_report
from runner.kinds.reporting import ReportSection
from runner.present.bootstrap import PairedBootstrap
from runner.present.tables import CELL_COLUMNS, TOPK_LABEL, Table, cell_frame, metric_cell
from runner.report import build_report
from runner.report.writer import MANIFEST

SECTIONS = ("features", "token-mixing", "fgbg", "lowpass", "spatial", "tasks")


def build(filled, out, task_keys=None, **kwargs):
    return build_report(filled.study, task_keys or filled.task_keys, filled.engine,
                        filled.store_root, out, model_names=filled.model_names, **kwargs)


@pytest.fixture()
def report(built_report):
    return built_report.index, built_report.seconds


def links(html: str, attribute: str) -> list[str]:
    return re.findall(rf'{attribute}="([^"#][^"]*)"', html)


def test_every_image_and_link_exists(report):
    index, _ = report
    html = index.read_text()
    images = links(html, "src")
    assert len(images) == 7  # 2 panel grids, isolation curve, Figure 6, 2 filters, spatial
    for src in images:
        with Image.open(index.parent / src) as image:
            assert image.format == "PNG" and image.width > 100
    hrefs = [h for h in links(html, "href") if not h.startswith("http")]
    assert any(h.endswith(".csv") for h in hrefs) and any(h.endswith(".md") for h in hrefs)
    for href in hrefs:
        assert (index.parent / href).is_file(), href


def test_all_sections_built_without_notes_of_failure(report):
    html = report[0].read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert "could not be built" not in html
    assert "1 of 4 `lowpass` tasks are not done (1 failed)" in html
    assert "RuntimeError: out of memory" in html  # the failed task's error, in Tasks
    assert "paper <b>78.61</b>" in html and "paper <b>15.94</b>†" in html


def test_csv_tables_are_the_tables(report, filled_study):
    folder = report[0].parent
    table2 = pd.read_csv(folder / "tables/table2.csv")
    assert len(table2) == 12
    db_rows = results.results(filled_study.engine, kind="fgbg", name="top5_norm")
    for cell in table2[table2["name"] == "top5_norm"].itertuples():
        match = db_rows[(db_rows["task_key"] == cell.task_key)
                        & (db_rows["variant"] == cell.variant)]
        assert cell.value == pytest.approx(match["value"].iloc[0], rel=1e-12)
    table1 = pd.read_csv(folder / "tables/table1.csv")
    assert set(CELL_COLUMNS) <= set(table1.columns)
    assert table1["paper"].notna().sum() == 10  # vit_b16's ten cells
    markdown = (folder / "tables/table1.md").read_text()
    assert markdown.startswith("### Table 1") and "(paper 84.20)" in markdown
    assert "![" in (folder / "report.md").read_text()


def test_report_is_fast(report):
    assert report[1] < 20.0  # target: under 10 s on the 2-core machine (bench/report_html.py)


def test_missing_kinds_are_skipped_with_a_note(tmp_path):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    html = build(filled, tmp_path / "out").read_text()
    for kind in ("visualize", "cls_isolation", "lowpass", "spatial_drop"):
        assert f"This study has no `{kind}` task, so this section is skipped." in html
    assert "Table 2" in html and "could not be built" not in html
    assert links(html, "src") == []


def test_task_keys_default_to_the_study_and_unknown_keys_are_counted(tmp_path):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    html = build_report(filled.study, None, filled.url, filled.store_root,
                        tmp_path / "a").read_text()
    assert html.count('<tr class="group">') >= 1 and "vit_b16" in html
    html = build_report(filled.study, filled.task_keys + ["f" * 64], filled.engine,
                        filled.store_root, tmp_path / "b").read_text()
    assert "1 planned tasks have never run" in html


def test_pending_tasks_are_noted(tmp_path):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    run = db.start_run(filled.engine, study="demo", command="t", provenance={})
    db.claim_task(filled.engine, dict(key="p" * 64, study="demo", kind="fgbg", kind_version=1,
                                      model="vit_s", params="{}"), run)
    html = build_report("demo", filled.task_keys + ["p" * 64], filled.engine,
                        filled.store_root, tmp_path / "out").read_text()
    assert "1 of 5 `fgbg` tasks are not done (1 running)" in html


def test_rebuild_removes_stale_files_only(built_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built_report.index.parent, out)
    assert (out / "figures/isolation_curve.png").is_file()
    (out / "notes.txt").write_text("mine")
    small = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    build(small, out)
    assert not (out / "figures/isolation_curve.png").exists()
    assert (out / "tables/table2.csv").is_file() and (out / MANIFEST).is_file()
    assert (out / "notes.txt").read_text() == "mine"


def test_corrupt_correctness_drops_intervals_not_the_table(tmp_path):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    for path in results.artifacts(filled.engine, role="correct", store_root=filled.store_root)[
            "file"]:
        with open(path, "wb") as broken:
            broken.write(b"not a zip")
    out = tmp_path / "out"
    html = build(filled, out).read_text()
    assert "could not be built" not in html
    table2 = pd.read_csv(out / "tables/table2.csv")
    assert table2["ci_low"].isna().all() and table2["value"].notna().all()


def test_a_failing_section_does_not_stop_the_report(tmp_path, monkeypatch):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store",
                        kinds=["fgbg", "spatial_drop"])

    def broken(*args, **kwargs):
        raise RuntimeError("table 2 exploded")

    monkeypatch.setattr(fgbg_report, "table2", broken)
    html = build(filled, tmp_path / "out").read_text()
    assert "This section could not be built: RuntimeError(&#x27;table 2 exploded&#x27;)" in html
    assert "Linearity per layer" in html


def _ghost_section(ctx):
    """A kind from another package: accuracy on its own variants, normalized by ``plain``."""
    if ctx.done() is None:
        return
    rows = ctx.intervals(reference="plain")
    ctx.note("The ghost kind was here.")
    ctx.table(Table("ghost_accuracy", "Ghost accuracy per variant", cell_frame([
        metric_cell(r, ctx.data.labels[r.task_key], r.variant, TOPK_LABEL[r.name[:4]]
                    + (" (norm.)" if r.name.endswith("_norm") else ""), None)
        for r in rows.itertuples()])))


GHOST = ReportSection(id="ghost", title="Ghost kind", intro="Contributed by a plugin.",
                      build=_ghost_section, order=25)


def _ghost_task(filled, hits):
    """A done task of kind ``ghost`` with top-1 on ``plain`` and ``odd`` and its correctness."""
    from runner.results.correctness import Correctness, HitsKey

    run = db.start_run(filled.engine, study="demo", command="t", provenance={})
    key = "9" * 64
    db.claim_task(filled.engine, dict(key=key, study="demo", kind="ghost", kind_version=1,
                                      model="vit_s", params="{}"), run)
    correct = Correctness(np.arange(len(hits["plain"])),
                          {HitsKey(v, 1): a for v, a in hits.items()})
    path, sha, size = put(filled.store_root, npz_bytes(correct.to_arrays()), ".npz")
    metrics = [MetricRow("top1", 100.0 * a.mean(), variant=v) for v, a in hits.items()]
    metrics.append(MetricRow("top1_norm", 100.0 * hits["odd"].mean() / hits["plain"].mean(),
                             variant="odd"))
    db.finish_task(filled.engine, key, metric_rows=[asdict(m) for m in metrics],
                   artifact_rows=[asdict(ArtifactRow("correct", path, sha, size))],
                   info={}, device="cpu")
    return key


def test_a_section_from_a_kind_the_builder_does_not_know(tmp_path, monkeypatch):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    rng = np.random.default_rng(3)
    hits = {"plain": rng.random(60) < 0.7, "odd": rng.random(60) < 0.4}
    key = _ghost_task(filled, hits)
    known, get = runner.kinds.available_kinds, runner.kinds.get_kind
    monkeypatch.setattr(runner.kinds, "available_kinds", lambda: [*known(), "ghost"])
    monkeypatch.setattr(runner.kinds, "get_kind", lambda name: SimpleNamespace(
        report_section=lambda: GHOST) if name == "ghost" else get(name))
    out = tmp_path / "out"
    html = build(filled, out, task_keys=filled.task_keys + [key], n_boot=200).read_text()
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids == ["features", "topk", "concepts", "map-boxes", "token-mixing", "ghost", "fgbg",
                   "lowpass", "spatial", "tasks"]
    assert "Ghost accuracy per variant" in html and "The ghost kind was here." in html
    assert "could not be built" not in html
    cells = pd.read_csv(out / "tables/ghost_accuracy.csv").set_index("column")
    boot = PairedBootstrap(hits, n_boot=200)
    odd = cells[cells["row"] == "odd"]
    assert (odd.loc["Top-1", "ci_low"], odd.loc["Top-1", "ci_high"]) == pytest.approx(
        boot.accuracy("odd"))
    assert (odd.loc["Top-1 (norm.)", "ci_low"], odd.loc["Top-1 (norm.)", "ci_high"]) == \
        pytest.approx(boot.ratio("odd", "plain"))
    assert "tables/ghost_accuracy.csv" in json.loads((out / MANIFEST).read_text())


def test_a_kind_that_cannot_be_imported_shows_its_error(tmp_path, monkeypatch):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    known, get = runner.kinds.available_kinds, runner.kinds.get_kind

    def get_kind(name):
        if name == "broken":
            raise KindError("study kind 'broken' cannot be imported")
        return get(name)

    monkeypatch.setattr(runner.kinds, "available_kinds", lambda: [*known(), "broken"])
    monkeypatch.setattr(runner.kinds, "get_kind", get_kind)
    html = build(filled, tmp_path / "out").read_text()
    assert '<section id="kind-broken">' in html
    assert "This section could not be built: KindError(" in html
    assert "Table 2" in html
