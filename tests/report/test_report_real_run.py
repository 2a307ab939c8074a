"""The report from a database filled by a real (tiny) run: every table cell is the metric row
it came from, with an interval around it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from runner import db
from runner.cli import main
from tests.helpers import TINY_EVALUATIONS, write_study

pytestmark = pytest.mark.slow



def test_tables_1_and_2_come_from_the_real_rows(tmp_path: Path) -> None:
    study = write_study(tmp_path, TINY_EVALUATIONS)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["--db", url, "--artifacts", str(tmp_path / "a")]
    run = CliRunner().invoke(main, [*args, "run", str(study)])
    assert run.exit_code == 0, run.output
    out = tmp_path / "report"
    rep = CliRunner().invoke(main, [*args, "report", str(study), "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    assert (out / "index.html").exists()

    cols, rows = db.query(db.connect(url), "SELECT task_key, name, variant, x, value "
                          "FROM results")
    truth = pd.DataFrame(rows, columns=cols)

    def source_value(cell: pd.Series) -> float:
        match = truth[(truth.task_key == cell.task_key) & (truth.name == cell["name"])
                      & (truth.variant == cell.variant)
                      & ((truth.x == cell.x) | (truth.x.isna() & pd.isna(cell.x)))]
        assert len(match) == 1, cell
        return float(match.value.iloc[0])

    table2 = pd.read_csv(out / "tables" / "table2.csv")
    assert set(table2.column) == {"Full image (top-5)", "Foreground (norm. top-5)",
                                  "Background (norm. top-5)"}
    assert set(table2.row) == {"vit"}
    table1 = pd.read_csv(out / "tables" / "table1.csv")
    assert {"Natural", "Isolating CLS", "Patch Average", "Patch Maximum"} <= set(table1.column)
    assert set(table1.row) == {"Top-1", "Top-5"}
    for table in (table1, table2):
        for _, cell in table.iterrows():
            assert cell.value == pytest.approx(source_value(cell))
            if not pd.isna(cell.ci_low):
                assert cell.ci_low <= cell.value + 1e-9 <= cell.ci_high + 2e-9
    html = (out / "index.html").read_text()
    assert "spatial_drop" in html  # the kind this study lacks is named in a skip note
