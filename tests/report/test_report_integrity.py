"""A report never trusts a stored array that changed: a `correct` file that no longer hashes to
its recorded sha256 (same size, other bytes) is named in the report, and only that task loses
its intervals. A `correct` file in the older format (arrays named ``fg_top1``, dimensions in
the names) is named too, with the way out, and is never parsed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from report_rows import fill_study, npz_bytes

from runner import db, results
from runner.report import build_report
from runner.results.study import StudyData


def test_a_corrupted_correct_file_is_reported_and_its_intervals_left_out(tmp_path: Path) -> None:
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    rows = results.artifacts(filled.engine, role="correct", store_root=filled.store_root)
    damaged = rows.iloc[0]
    data = Path(damaged["file"]).read_bytes()
    Path(damaged["file"]).write_bytes(bytes(255 - b for b in data))  # same size, other bytes
    out = tmp_path / "out"
    index = build_report(filled.study, filled.task_keys, filled.engine, filled.store_root, out,
                         model_names=filled.model_names)
    markdown = (out / "report.md").read_text()
    assert f"({damaged['task_key'][:10]}): its `correct` file {damaged['path']} is corrupted" \
        in markdown
    assert "intervals are left out" in index.read_text()
    table2 = pd.read_csv(out / "tables/table2.csv")
    assert table2["value"].notna().all()
    assert table2["ci_low"].isna().any() and table2["ci_low"].notna().any(), \
        "only the damaged task loses its intervals"


def test_a_correct_file_in_the_older_format_is_reported_not_parsed(tmp_path: Path) -> None:
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    rows = results.artifacts(filled.engine, role="correct", store_root=filled.store_root)
    old = rows.iloc[0]
    arrays = filled.arrays[old["task_key"]]
    # the older format: dimensions only in the array names, no `variant` column
    data = npz_bytes({"index": np.arange(len(arrays["fg_top1"])), **arrays})
    Path(old["file"]).write_bytes(data)
    with db.write(filled.engine) as conn:  # recorded as it was stored: its sha256 matches
        conn.exec_driver_sql("UPDATE artifacts SET sha256 = ?, bytes = ? WHERE path = ?",
                             (hashlib.sha256(data).hexdigest(), len(data), old["path"]))
    study = StudyData.load(filled.study, filled.task_keys, filled.engine, filled.store_root)
    assert study.correct(old["task_key"]) is None
    assert "stored by an older version (no `variant` column)" in study.damaged[old["task_key"]]
    assert "rerun the task" in study.damaged[old["task_key"]]
    out = tmp_path / "out"
    build_report(filled.study, filled.task_keys, filled.engine, filled.store_root, out)
    markdown = (out / "report.md").read_text()
    assert f"({old['task_key'][:10]}): its `correct` file was stored by an older version" \
        in markdown
    table2 = pd.read_csv(out / "tables/table2.csv")
    assert table2["value"].notna().all()
    assert table2["ci_low"].isna().any() and table2["ci_low"].notna().any()
