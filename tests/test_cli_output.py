"""What the CLI prints for people: `results` compact by default and everything with --wide,
times as ISO-8601 UTC in tables (raw numbers in CSV), `kinds` as the YAML a study file takes,
and the global options accepted after the command name."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from runner.cli import COMPACT_RESULT_COLUMNS, main
from tests.helpers import TINY_STUDY, make_results_db, write_study

ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture
def url(workdir: Path) -> str:
    """A real result database in a folder of the test's own (not ./results.db)."""
    (workdir / "db").mkdir()
    return f"sqlite:///{make_results_db(workdir / 'db', 'r.db')}"


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_results_compact_by_default(url: str) -> None:
    lines = _invoke("results", "--db", url).splitlines()
    assert lines[0].split() == list(COMPACT_RESULT_COLUMNS)
    assert len(lines) == 4  # header + 3 metrics
    assert lines[1].split()[:2] == ["a" * 10, "fgbg"]  # the short key, as `plan` shows it
    assert "radii" not in "\n".join(lines) and "tiny" not in "\n".join(lines)
    assert lines[3].split() == ["b" * 10, "lowpass", "vit", "shapes_val", "top1", "lowpass",
                                "-", "-", "8", "40"]


def test_results_wide_has_every_column(url: str) -> None:
    lines = _invoke("results", "--wide", "--db", url).splitlines()
    assert lines[0].split() == ["study", "kind", "model", "dataset", "params", "task_key",
                                "name", "variant", "layer", "feature", "x", "position", "value"]
    assert '{"radii": [8.0]}' in lines[1] and "a" * 64 in lines[1]


def test_results_csv_is_compact_with_full_keys(url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(_invoke("results", "--format", "csv", "--db", url))))
    assert list(rows[0]) == list(COMPACT_RESULT_COLUMNS)
    assert {r["key"] for r in rows} == {"a" * 64, "b" * 64}
    wide = list(csv.DictReader(io.StringIO(
        _invoke("results", "--wide", "--format", "csv", "--db", url))))
    assert wide[0]["params"] == '{"radii": [8.0]}'


def test_sql_shows_times_as_iso_utc_in_tables_and_raw_in_csv(url: str) -> None:
    path = url[len("sqlite:///"):]
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    started = con.execute("SELECT started_at FROM runs").fetchone()[0]
    con.close()
    table = _invoke("sql", "SELECT id, started_at, ended_at, heartbeat_at FROM runs",
                    "--db", url)
    expected = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cells = table.splitlines()[1].split()
    assert cells[1] == expected and all(re.fullmatch(ISO_UTC, c) for c in cells[1:])
    assert "e+09" not in table
    raw = list(csv.DictReader(io.StringIO(
        _invoke("sql", "SELECT started_at FROM runs", "--format", "csv", "--db", url))))
    assert float(raw[0]["started_at"]) == pytest.approx(started)


def test_sql_missing_time_prints_a_dash(url: str) -> None:
    table = _invoke("sql", "SELECT CAST(NULL AS REAL) AS ended_at, 1 AS n", "--db", url)
    assert table.splitlines()[1].split() == ["-", "1"]


def test_kinds_prints_params_as_yaml_that_loads_back_to_the_defaults() -> None:
    from runner.kinds import available_kinds, get_kind

    out = _invoke("kinds")
    assert not re.search(r"\b[A-Z]\w*\(\w+=", out)  # no Python repr like TopFeatures(top=8)
    documents = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in documents] == list(available_kinds())
    for document in documents:
        params = get_kind(document["kind"]).Params
        assert document["params"] == params().model_dump(mode="json")
        assert params.model_validate(document["params"]) == params()
    # a param's description is its comment; a nested default is the mapping a user writes
    assert re.search(r"\n  # per layer: .*\n  # .*\n  features: \{top: 8, by: topk-activation\}\n",
                     out)


def test_global_options_after_the_command_name(workdir: Path) -> None:
    """`vitstudy run FILE --db URL --artifacts DIR`: the run goes there, nothing to ./."""
    study = write_study(workdir, TINY_STUDY)
    (workdir / "elsewhere").mkdir()
    url = f"sqlite:///{workdir / 'elsewhere' / 'r.db'}"
    out = _invoke("run", str(study), "--db", url, "--artifacts", "elsewhere/store",
                  "--device", "cpu")
    assert "2 done, 0 failed" in out
    assert not (workdir / "results.db").exists() and not (workdir / "artifacts").exists()
    assert any(p.is_file() for p in (workdir / "elsewhere" / "store").rglob("*"))
    listed = _invoke("results", str(study), "--db", url, "--name", "top1")
    assert "lowpass" in listed
    assert "2 cached" in _invoke("plan", str(study), "--artifacts", "elsewhere/store",
                                 "--db", url)


def test_output_piped_into_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """`vitstudy sql ... | head -1`: the closed pipe ends the command quietly with exit 0."""
    import os
    import subprocess
    import sys

    db_file = make_results_db(tmp_path)
    many_rows = ("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
                 "WHERE x < 200000) SELECT x FROM n")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "--db", f"sqlite:///{db_file}",
                             "sql", many_rows], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1],
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.stdout.readline().strip() == b"x"
    proc.stdout.close()  # what `head -1` does once it has its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "error" not in stderr and "Traceback" not in stderr, stderr
