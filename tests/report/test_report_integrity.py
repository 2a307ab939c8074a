"""A report never trusts a stored array that changed: a `correct` file that no longer hashes to
its recorded sha256 (same size, other bytes) is named in the report, and only that task loses
its intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from report_rows import fill_study

from runner import results
from runner.report import build_report


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
