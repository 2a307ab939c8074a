"""Adversarial names in the report: model, study and dataset names that are HTML, spreadsheet
formulas, emoji, paths or very long; a failed task's error; Table 1's insertion layer.

One real SQLite database is filled through ``runner.db`` with rows shaped as the kinds write
them (``tests/report/report_rows.py``), the report is built once from it, and each case checks
one promise on the files written: nothing raw in Markdown or HTML, no formula in a CSV cell,
one safe file per name, the error shown, L = depth - 1.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner import db
from runner.kinds.base import ArtifactRow, MetricRow
from runner.report import build_report
from tests.report.report_rows import fgbg_rows, put, spatial_drop_rows

STUDY = "<script>alert('study')</script>"
SCRIPT = "<script>alert(1)</script>"
HYPERLINK = '=HYPERLINK("http://evil.example","click")'
EMOJI_A, EMOJI_B = "vit-😀", "vit-😎"
DOTS = "../../etc/passwd"
LONG = "m" * 300
PIPE = "a|b"
MATH = "$\\frac{1}{0}$"
#: Runs in a browser if inserted raw: marks <body> (checked in headless Chromium).
PWN = """<img src=x onerror="document.body.setAttribute('data-pwned','1')">"""
#: fgbg task per model alias; each alias is what a study file could name a model.
FGBG_MODELS = (SCRIPT, HYPERLINK, "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tx", PIPE)
#: spatial_drop task per model alias: each one gets a figure file named after it.
FIGURE_MODELS = (EMOJI_A, EMOJI_B, DOTS, "a/b", LONG, MATH, SCRIPT, PWN)
DATASETS = ("<b>ds</b>", "=cmd()")  # two fgbg tasks of one model differ only by dataset
FAILED_ERROR = ("ValueError: <img src=x onerror=alert(1)> broke\n"
                '  File "runner/kinds/fgbg.py", line 60, in finish\n    raise ValueError(...)')
#: cls_isolation tasks: (model alias, params layers, recorded depth, insertion layers stored).
ISOLATION = (("iso_11_12", [11, 12], 12, (11, 12)),
             ("iso_3", [3], 12, (3,)),
             ("iso_default", None, None, (0, 1, 2, 3, 4)),
             ("iso_unknown_depth", [2, 5], None, (2, 5)))
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Built:
    """The built report and the keys of the tasks in it."""

    out: Path
    keys: dict[tuple[str, str], str]
    failed_key: str


class _Writer:
    """Writes tasks straight into a real database, as the executor records them."""

    def __init__(self, root: Path) -> None:
        self.engine = db.connect(f"sqlite:///{root / 'results.db'}")
        self.store = root / "artifacts"
        self.run_id = db.start_run(self.engine, study=STUDY, command="pytest",
                                   provenance={"git_sha": "0" * 40, "device": "cpu"})
        self.keys: dict[tuple[str, str], str] = {}

    def claim(self, kind: str, model: str, params: dict[str, Any], dataset: str = "val") -> str:
        parts = json.dumps([kind, model, params, dataset], sort_keys=True)
        key = hashlib.sha256(parts.encode()).hexdigest()
        row = dict(key=key, study=STUDY, kind=kind, kind_version=1, model=model,
                   model_id=f"timm/{model}", dataset=dataset, dataset_id=f"id:{dataset}",
                   params=json.dumps(params, sort_keys=True), key_parts=parts, upstream="[]",
                   seed=0)
        assert db.claim_task(self.engine, row, self.run_id)
        self.keys[(kind, f"{model}@{dataset}")] = key
        return key

    def done(self, kind: str, model: str, made: tuple, dataset: str = "val",
             info: dict[str, Any] | None = None) -> str:
        params, metrics, artifacts, _ = made
        key = self.claim(kind, model, params, dataset)
        artifact_rows = []
        for role, data, suffix, dims in artifacts:
            path, sha, size = put(self.store, data, suffix)
            artifact_rows.append(vars(ArtifactRow(role, path, sha, size, **dims)))
        db.finish_task(self.engine, key, metric_rows=[vars(MetricRow(**m)) for m in metrics],
                       artifact_rows=artifact_rows, info=info or {}, device="cpu")
        return key


def _isolation_rows(layers: list[int] | None, stored: tuple[int, ...]) -> tuple:
    """cls_isolation rows: natural accuracy and the isolated accuracy at each stored L (value
    100 - L, so a test can tell which L a cell shows)."""
    metrics = [dict(name=k, value=90.0, variant="natural") for k in ("top1", "top5")]
    metrics += [dict(name=k, value=100.0 - layer, variant="isolated", x=float(layer))
                for layer in stored for k in ("top1", "top5")]
    return {"layers": layers, "patch_heads": False}, metrics, [], {}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The report of a study whose every name is hostile, built once for all cases."""
    root = tmp_path_factory.mktemp("hostile")
    writer = _Writer(root)
    rng = np.random.default_rng(0)
    for model in FGBG_MODELS:
        writer.done("fgbg", model, fgbg_rows(rng, 40, 0.7, True))
    for dataset in DATASETS:
        writer.done("fgbg", "twice", fgbg_rows(rng, 40, 0.7, True), dataset=dataset)
    for model in FIGURE_MODELS:
        writer.done("spatial_drop", model, spatial_drop_rows(rng))
    for model, layers, depth, stored in ISOLATION:
        info = {} if depth is None else {"depth": depth}
        writer.done("cls_isolation", model, _isolation_rows(layers, stored), info=info)
    failed_key = writer.claim("fgbg", "broken", {"fill": "black"})
    db.fail_task(writer.engine, failed_key, FAILED_ERROR)
    db.end_run(writer.engine, writer.run_id, "done")
    out = root / "reports" / "out"
    build_report(STUDY, list(writer.keys.values()), writer.engine, writer.store, out,
                 n_boot=50)
    return Built(out, writer.keys, failed_key)


# ------------------------------------------------------------------------------ checks


def _read(built: Built, relative: str) -> str:
    return (built.out / relative).read_text(encoding="utf-8")


def _csv_cells(built: Built) -> list[str]:
    cells = []
    for path in sorted((built.out / "tables").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            cells += [cell for row in csv.reader(handle) for cell in row]
    return cells


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _markdown_files(built: Built) -> dict[str, str]:
    files = {"report.md": _read(built, "report.md")}
    files.update({f"tables/{p.name}": p.read_text(encoding="utf-8")
                  for p in (built.out / "tables").glob("*.md")})
    return files


def no_raw_html_in_markdown(built: Built) -> None:
    for name, text in _markdown_files(built).items():
        assert not re.search(r"<\s*(script|img|b)\b", text, re.I), name
    report = _read(built, "report.md")
    assert report.startswith("# &lt;script&gt;alert('study')&lt;/script&gt;\n")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _read(built, "tables/table2.md")


def dataset_names_escaped_in_markdown(built: Built) -> None:
    table2 = _read(built, "tables/table2.md")
    assert "dataset=&lt;b&gt;ds&lt;/b&gt;" in table2 and "<b>ds" not in table2


def markdown_pipes_do_not_break_rows(built: Built) -> None:
    table2 = _read(built, "tables/table2.md")
    header = next(line for line in table2.splitlines() if line.startswith("| |"))
    (row,) = [line for line in table2.splitlines() if " · a\\|b |" in line]
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))


def one_script_tag_in_html(built: Built) -> None:
    page = _read(built, "index.html")
    assert len(re.findall(r"<script", page, re.I)) == 1  # the page's own image check
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>&lt;script&gt;alert(&#x27;study&#x27;)&lt;/script&gt;" in page
    assert "<b>ds</b>" not in page and "&lt;b&gt;ds&lt;/b&gt;" in page


def every_section_built(built: Built) -> None:
    page = _read(built, "index.html")
    assert "could not be built" not in page  # a '$' or emoji in a label broke no figure


def csv_has_no_formula_cell(built: Built) -> None:
    cells = _csv_cells(built)
    risky = [c for c in cells if c.startswith(FORMULA_STARTS) and not _is_number(c)]
    assert not risky, risky


def csv_formula_names_prefixed(built: Built) -> None:
    cells = _csv_cells(built)
    for name in (HYPERLINK, "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tx"):
        assert f"'{name}" in cells, name


def csv_numbers_untouched(built: Built) -> None:
    with (built.out / "tables" / "table2.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(_is_number(r["value"]) for r in rows)
    assert not any(r["value"].startswith("'") for r in rows)


def _figures(built: Built, prefix: str) -> list[Path]:
    return sorted((built.out / "figures").glob(f"{prefix}*.png"))


def emoji_names_get_distinct_files(built: Built) -> None:
    files = [p.name for p in _figures(built, "spatial_drop_vit_")]
    assert len(files) == 2 and len(set(files)) == 2


def one_figure_per_model(built: Built) -> None:
    assert len(_figures(built, "spatial_drop_")) == len(FIGURE_MODELS)


def file_names_are_safe(built: Built) -> None:
    manifest = json.loads(_read(built, ".report-files.json"))
    for relative in manifest:
        assert re.fullmatch(r"(tables|figures)/[a-z0-9_]+\.(csv|md|png)|index\.html|report\.md",
                            relative), relative
        assert len(Path(relative).name) <= 100, relative


def nothing_written_outside(built: Built) -> None:
    root = built.out.parents[1]
    outside = [p for p in root.rglob("*") if p.is_file()
               and not p.is_relative_to(built.out) and not p.is_relative_to(root / "artifacts")
               and not p.name.startswith("results.db")]
    assert not outside, outside
    assert not (root / "etc").exists() and not (root / "reports" / "etc").exists()


def failed_task_shows_its_error(built: Built) -> None:
    first = FAILED_ERROR.splitlines()[0]
    with (built.out / "tables" / "tasks.csv").open(newline="", encoding="utf-8") as handle:
        rows = {r["key"]: r for r in csv.DictReader(handle)}
    assert rows[built.failed_key[:10]]["error"] == first
    assert rows[built.failed_key[:10]]["status"] == "failed"
    page = _read(built, "index.html")
    assert "ValueError: &lt;img src=x onerror=alert(1)&gt; broke" in page
    assert "<img src=x" not in page and "raise ValueError" not in page


def _table1(built: Built) -> list[dict[str, str]]:
    with (built.out / "tables" / "table1.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _isolated_cells(built: Built, model: str) -> list[dict[str, str]]:
    return [r for r in _table1(built) if r["model"] == model and r["column"] == "Isolating CLS"]


def table1_depth_minus_one_not_largest(built: Built) -> None:
    cells = _isolated_cells(built, "iso_11_12")
    assert {float(c["x"]) for c in cells} == {11.0}
    assert {float(c["value"]) for c in cells} == {89.0}  # 100 - 11, not 100 - 12
    assert cells[0]["group"] == "iso_11_12: CLS joins at layer L=11"


def table1_not_measured(built: Built) -> None:
    assert _isolated_cells(built, "iso_3") == []
    groups = {r["group"] for r in _table1(built) if r["model"] == "iso_3"}
    assert groups == {"iso_3: Isolating CLS not measured at L = depth - 1 = 11 "
                      "(layers measured: 3)"}
    assert "not measured at L = depth - 1 = 11" in _read(built, "report.md")


def table1_default_sweep(built: Built) -> None:
    cells = _isolated_cells(built, "iso_default")
    assert {float(c["x"]) for c in cells} == {3.0}  # 0..4 measured: depth 4, L = 3


def table1_depth_unknown(built: Built) -> None:
    assert _isolated_cells(built, "iso_unknown_depth") == []
    groups = {r["group"] for r in _table1(built) if r["model"] == "iso_unknown_depth"}
    assert groups == {"iso_unknown_depth: Isolating CLS not shown, the model's depth was not "
                      "recorded (layers measured: 2, 5)"}


def nothing_runs_in_a_browser(built: Built) -> None:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("needs headless Chromium (apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
               "--allow-file-access-from-files", "--virtual-time-budget=5000",
               f"--user-data-dir={built.out.parent / 'chromium-profile'}",
               (built.out / "index.html").resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None and "data-images-total" in body[0], dom[:500]
    assert "data-pwned" not in body[0]  # no name ran as code
    total = re.search(r'data-images-total="(\d+)"', body[0])[1]
    loaded = re.search(r'data-images-loaded="(\d+)"', body[0])[1]
    assert total == loaded  # every hashed figure name is linked right


CASES = [no_raw_html_in_markdown, dataset_names_escaped_in_markdown,
         markdown_pipes_do_not_break_rows, one_script_tag_in_html, every_section_built,
         csv_has_no_formula_cell, csv_formula_names_prefixed, csv_numbers_untouched,
         emoji_names_get_distinct_files, one_figure_per_model, file_names_are_safe,
         nothing_written_outside, failed_task_shows_its_error,
         table1_depth_minus_one_not_largest, table1_not_measured, table1_default_sweep,
         table1_depth_unknown, nothing_runs_in_a_browser]


@pytest.mark.parametrize("check", CASES, ids=lambda check: check.__name__)
def test_case(check: Any, built: Built) -> None:
    check(built)
