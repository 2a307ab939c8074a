"""bench/demo_numbers.py: the quickstart numbers in README.md and docs/ are written from a
real SQLite database holding the rows a `make demo` run writes; --check finds a stale number;
a claim the data does not support is reported; several runs show mean and range."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from bench import demo_numbers as demo
from runner import db

REPO = Path(__file__).resolve().parents[1]

#: Plausible quickstart numbers (every README claim holds on them).
VALUES = {
    "val_top1": (88.2, 86.0), "natural_top1": (88.2, 86.0),
    "full_top1": (88.2, 86.0), "full_top5": (99.0, 98.5), "fg_top1": (59.3, 66.5),
    "fg_top5": (85.4, 97.0), "bg_top1": (10.2, 14.3), "bg_top5": (53.4, 63.9),
    "fg_top5n": (86.3, 98.5), "bg_top5n": (53.9, 64.9),
    **{f"lowpass_r{r}": (v, c) for r, v, c in zip(demo.RADII, (28.3, 68.3, 84.7, 88.2, 88.0, 88.2),
                                                  (29.3, 47.7, 68.7, 85.3, 86.0, 86.0),
                                                  strict=True)},
    **{f"highpass_r{r}": (20.0 + r, 10.0 + r) for r in demo.RADII},
}
VIT_ONLY = {"vit_cls_natural": 88.2, "vit_cls_isolated_l0": 88.2, "vit_cls_isolated_l5": 7.5,
            "vit_patch_average": 74.4, "vit_patch_maximum": 82.3,
            **{f"vit_drop_r2_l{i}": r2 for i, r2 in enumerate((0.99, 0.93, 0.96, 0.6, 0.29,
                                                               0.75))}}


def quickstart_values(**changes: float) -> dict[str, float]:
    """Every figure's value, by key, with ``changes`` applied."""
    values = {f"{m}_{k}": pair[i] for k, pair in VALUES.items() for i, m in enumerate(("vit",
                                                                                       "cnn"))}
    return {**values, **VIT_ONLY, **changes}


def write_demo_db(path: Path, values: dict[str, float], seconds: float = 261.0) -> str:
    """A SQLite database holding a quickstart run's done tasks with these metric values,
    written through runner.db as the executor writes them."""
    url = f"sqlite:///{path}"
    engine = db.connect(url)
    run_id = db.start_run(engine, study="quickstart", command="vitstudy run quickstart.yaml",
                          provenance={"device": "cpu"})
    by_task: dict[tuple[str, str], list[dict]] = {}
    for key, f in demo.FIGURES.items():
        by_task.setdefault((f.kind, f.model), []).append(dict(
            name=f.name, value=values[key], variant=f.variant, layer=f.layer,
            feature=None, x=f.x, position=None))
    for (kind, model), rows in by_task.items():
        key = f"{kind}-{model}".ljust(64, "0")
        row = dict(key=key, study="quickstart", kind=kind, kind_version=1, model=model,
                   model_id=model, dataset="shapes_val", dataset_id="synthetic", params="{}",
                   key_parts=json.dumps([kind, model]), upstream="[]", seed=0)
        assert db.claim_task(engine, row, run_id)
        db.finish_task(engine, key, metric_rows=rows, artifact_rows=[], info={}, device="cpu")
    db.end_run(engine, run_id, "done")
    with sqlite3.connect(path) as conn:  # the run's wall time, as a real run leaves it
        conn.execute("UPDATE runs SET ended_at = started_at + ? WHERE id = ?", (seconds, run_id))
    engine.dispose()
    return str(path)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A copy of the repository's docs that the script may rewrite."""
    root = tmp_path / "repo"
    for rel in demo.DOCS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    return root


def set_metric(path: str, name: str, variant: str, value: float) -> None:
    with sqlite3.connect(path) as conn:
        changed = conn.execute("UPDATE metrics SET value = ? WHERE name = ? AND variant = ?",
                               (value, name, variant)).rowcount
    assert changed == 1


def test_docs_are_written_from_the_database_then_check_passes(docs, tmp_path, capsys):
    path = write_demo_db(tmp_path / "results.db", quickstart_values())
    assert demo.main(["--db", path], root=docs) == 0
    readme = (docs / "README.md").read_text()
    assert ("| cls_isolation: natural, isolated at L = 5, Patch Average, Patch Maximum | "
            "88.2, 7.5, 74.4, 82.3 | - |") in readme
    assert ("| spatial_drop: linearity R^2 of the count curve, layers 0-5 | "
            "0.99, 0.93, 0.96, 0.60, 0.29, 0.75 | - |") in readme
    conclusions = " ".join(readme.split())
    assert "(68% against 48% at 2 cycles per image)" in conclusions
    assert "in blocks 0, 1 and 2; in blocks 3, 4 and 5 the count curve bends" in conclusions
    assert "every block but the last" not in conclusions  # the stale claim is gone
    assert "ViT to <!-- demo-numbers:vit_val_top1 -->88.2<!-- /demo-numbers -->%" in (
        docs / "docs/datasets.md").read_text()
    assert "Patch Maximum 82.3%" in " ".join((docs / "docs/evaluation.md").read_text().split())
    assert demo.main(["--db", path, "--check"], root=docs) == 0
    # outside the markers nothing moved
    original = (REPO / "README.md").read_text()
    assert readme.split("<!-- demo-numbers:begin table -->")[0] == original.split(
        "<!-- demo-numbers:begin table -->")[0]
    assert "rewritten" in capsys.readouterr().err


def test_check_finds_a_stale_number_and_changes_nothing(docs, tmp_path, capsys):
    path = write_demo_db(tmp_path / "results.db", quickstart_values())
    demo.main(["--db", path], root=docs)
    written = {rel: (docs / rel).read_text() for rel in demo.DOCS}
    set_metric(path, "top1", "patch_maximum", 80.0)
    capsys.readouterr()
    assert demo.main(["--db", path, "--check"], root=docs) == 1
    err = capsys.readouterr().err
    assert "README.md: stale" in err and "docs/evaluation.md: stale" in err
    assert "docs/datasets.md" not in err
    assert {rel: (docs / rel).read_text() for rel in demo.DOCS} == written


def test_a_claim_the_data_does_not_support_is_reported(docs, tmp_path, capsys):
    path = write_demo_db(tmp_path / "results.db", quickstart_values(vit_lowpass_r2=50.0))
    assert demo.main(["--db", path], root=docs) == 1
    err = capsys.readouterr().err
    assert ("claim does not hold: the ViT keeps more accuracy than the CNN under a strong "
            "low-pass (r = 2), by 10+ points: held in 0 of 1 runs") in err


def test_several_runs_show_mean_and_range_and_the_summary_says_what_moves(docs, tmp_path,
                                                                          capsys):
    paths = [write_demo_db(tmp_path / f"run{i}.db", quickstart_values(
        vit_patch_average=74.4 + i, vit_drop_r2_l3=0.6 + 0.35 * (i == 2)), seconds=300.0 + i)
        for i in range(3)]
    assert demo.main([arg for p in paths for arg in ("--db", p)], root=docs) == 0
    readme = (docs / "README.md").read_text()
    assert "88.2, 7.5, 75.4 (74.4-76.4), 82.3 | - |" in readme
    assert ("from 3 fresh `make demo` runs on one machine, each number their mean (and range)"
            in " ".join(readme.split()))
    # block 3 is linear in one run only: the README does not call it linear
    assert "in blocks 0, 1 and 2 in all 3 runs" in " ".join(readme.split())
    capsys.readouterr()
    assert demo.main(["--summary", *[a for p in paths for a in ("--db", p)]], root=docs) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
             if line.strip()}
    assert lines["vit_patch_average"][1:] == ["74.4000", "75.4000", "76.4000", "75.4000",
                                              "2.0000"]
    assert lines["cnn_val_top1"][-1] == "0.0000"


def test_identical_runs_are_said_to_be_identical(docs, tmp_path):
    paths = [write_demo_db(tmp_path / f"run{i}.db", quickstart_values()) for i in range(2)]
    assert demo.main([a for p in paths for a in ("--db", p)], root=docs) == 0
    assert "2 fresh `make demo` runs on one machine, identical in every number" in " ".join(
        (docs / "README.md").read_text().split())


def test_a_missing_database_is_one_line_exit_2_and_is_not_created(docs, tmp_path, capsys):
    missing = tmp_path / "typo.db"
    assert demo.main(["--db", str(missing), "--check"], root=docs) == 2
    assert capsys.readouterr().err == f"error: no database at {missing} (run `make demo` first)\n"
    assert not missing.exists()


def test_a_database_without_a_quickstart_number_is_exit_2(docs, tmp_path, capsys):
    path = write_demo_db(tmp_path / "results.db", quickstart_values())
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM metrics WHERE name = 'linearity_r2' AND layer = 4")
    assert demo.main(["--db", path], root=docs) == 2
    assert "0 rows for spatial_drop / vit: linearity_r2 variant=count x=None layer=4" in (
        capsys.readouterr().err)


def test_the_repository_docs_carry_every_marker():
    """What the script rewrites is marked in the real docs (a marker lost in an edit would
    leave a number nobody regenerates)."""
    text = {rel: (REPO / rel).read_text() for rel in demo.DOCS}
    for name, rel in (("table", "README.md"), ("conclusions", "README.md"),
                      ("evaluation", "docs/evaluation.md")):
        assert f"<!-- demo-numbers:begin {name} -->" in text[rel]
        assert f"<!-- demo-numbers:end {name} -->" in text[rel]
    assert "<!-- demo-numbers:vit_val_top1 -->" in text["docs/datasets.md"]
