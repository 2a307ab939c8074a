"""Adversarial cases, database and file system: a database that is missing, not a URL, not a
database, damaged, unreachable or full; SQL that would write; the global options typed after
the command name. Each: exit 2, one paragraph naming the URL or file, nothing written (the
harness compares every file's bytes and every table's row count before and after).
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.adversarial.harness import Case, check_case, db_rows, invoke, prepare
from tests.helpers import TINY_STUDY, make_results_db
from tests.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

DB = "sqlite:///{dir}/results.db"
#: A regular file: a database "inside" it cannot be created, even by root.
A_FILE = {"afile": "not a folder\n"}
NOT_CREATED = r"never create"


def _database(folder: Path) -> None:
    make_results_db(folder)


def _truncated(folder: Path) -> None:
    """A real database with enough rows to span many pages, cut in half."""
    path = make_results_db(folder)
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO metrics (task_key, name, value, layer) VALUES (?, ?, ?, ?)",
                    [("a" * 64, "top1", float(i), i) for i in range(3000)])
    con.commit()
    con.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign_sqlite(folder: Path) -> None:
    """A valid SQLite file that some other program made."""
    con = sqlite3.connect(folder / "results.db")
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()


def _newer_schema(folder: Path) -> None:
    path = make_results_db(folder)
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '0099'")
    con.commit()
    con.close()


def _closed_port() -> int:
    """A 127.0.0.1 port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sql(query: str, case_id: str, message: str = r"not authorized.*--write") -> Case:
    """`vitstudy sql QUERY` on a real database: refused, the file byte for byte unchanged."""
    return Case(case_id, ["sql", query, "--db", DB], message=[r"^error: SQL error", message],
                setup=_database)


MISSING = [
    Case(f"missing-db-{command[0]}", [*command, "--db", "sqlite:///typo.db"],
         message=[r"^error: no database at sqlite:///typo\.db", NOT_CREATED], study=study)
    for command, study in (
        (["results"], None),
        (["sql", "SELECT 1"], None),
        (["report", "{study}"], TINY_STUDY),
    )
] + [
    Case("missing-db-gc", ["--db", "sqlite:///typo.db", "gc", "--dry-run"],
         message=[r"^error: no database at sqlite:///.*typo\.db"]),
    Case("missing-db-verify", ["verify", "--db", "sqlite:///typo.db"],
         message=[r"^error: no database at sqlite:///.*typo\.db"]),
    Case("missing-db-sql-write", ["sql", "--write", "DELETE FROM tasks", "--db",
                                  "sqlite:///typo.db"],
         message=[r"no database at sqlite:///typo\.db", NOT_CREATED]),
    Case("missing-db-plan-all-new", ["plan", "{study}", "--db", "sqlite:///typo.db"], exit=0,
         message=[r"to run \(new\)", r"0 cached"], study=TINY_STUDY),
    Case("missing-db-why-all-new", ["why", "{study}", "--db", "sqlite:///typo.db"], exit=0,
         message=[r"new"], study=TINY_STUDY),
    Case("missing-db-validate", ["validate", "{study}", "--db", "sqlite:///typo.db"], exit=0,
         message=[r"ok"], study=TINY_STUDY),
]

BAD_DATABASES = [
    Case("not-a-url", ["--db", "notaurl", "results"],
         message=[r"^error: notaurl: could not parse", r"sqlite:///results\.db"]),
    Case("not-a-url-after-command", ["sql", "SELECT 1", "--db", "notaurl"],
         message=[r"^error: notaurl: could not parse"]),
    Case("unknown-dialect", ["results", "--db", "nosuchdb://host/x"],
         message=[r"^error: nosuchdb://host/x: can't load plugin"]),
    Case("text-file-as-db", ["results", "--db", DB], files={"results.db": "name,value\n1,2\n"},
         message=[r"results\.db: file is not a database", r"not a SQLite database"]),
    Case("garbage-db", ["sql", "SELECT 1", "--db", DB],
         files={"results.db": bytes(range(256)) * 64},
         message=[r"results\.db: file is not a database"]),
    Case("truncated-db", ["results", "--db", DB], setup=_truncated,
         message=[r"results\.db: database disk image is malformed", r"restore it"]),
    Case("empty-file-db", ["results", "--db", DB], files={"results.db": b""},
         message=[r"results\.db holds no vitstudy tables", NOT_CREATED]),
    Case("foreign-sqlite-db", ["gc", "--dry-run", "--db", DB], setup=_foreign_sqlite,
         message=[r"results\.db"]),
    Case("newer-schema", ["results", "--db", DB], setup=_newer_schema,
         message=[r"results\.db: .*schema version 99 is newer"]),
    Case("db-in-missing-folder", ["run", "{study}", "--db", "sqlite:///{dir}/nofolder/r.db"],
         study=TINY_STUDY, message=[r"nofolder/r\.db: unable to open database file",
                                    r"folder exists"]),
    Case("db-under-a-file", ["run", "{study}", "--db", "sqlite:///{dir}/afile/r.db"],
         study=TINY_STUDY, files=A_FILE, message=[r"afile/r\.db: unable to open database"]),
    Case("db-in-proc", ["run", "{study}", "--db", "sqlite:////proc/vitstudy-results.db"],
         study=TINY_STUDY, message=[r"/proc/vitstudy-results\.db: unable to open"]),
    Case("db-is-a-folder", ["run", "{study}", "--db", "sqlite:///{dir}/afolder"],
         study=TINY_STUDY, files={"afolder/keep.txt": "x"},
         message=[r"afolder: unable to open database file"]),
    Case("plan-on-a-garbage-db", ["plan", "{study}", "--db", DB], study=TINY_STUDY,
         files={"results.db": b"\x00garbage" * 500}, message=[r"results\.db: file is not a"]),
    Case("why-on-a-text-db", ["why", "{study}", "--db", DB], study=TINY_STUDY,
         files={"results.db": "id,value\n"}, message=[r"results\.db: file is not a database"]),
    Case("sql-on-a-foreign-db", ["sql", "SELECT * FROM notes", "--db", DB],
         setup=_foreign_sqlite, message=[r"results\.db holds no vitstudy tables"]),
    Case("results-db-is-a-folder", ["results", "--db", "sqlite:///{dir}/afolder"],
         files={"afolder/keep.txt": "x"}, message=[r"no database at sqlite:///.*afolder"]),
    Case("env-db-typo", ["results"], env={"VITSTUDY_DB": "sqlite:///typo.db"},
         message=[r"no database at sqlite:///typo\.db", r"VITSTUDY_DB"]),
    Case("no-driver", ["results", "--db", "mysql://u:pw@localhost/x"],
         message=[r"mysql://u:\*\*\*@localhost/x: no driver for mysql"]),
    Case("upgrade-under-a-file", ["db", "upgrade", "--db", "sqlite:///{dir}/afile/r.db"],
         files=A_FILE, message=[r"afile/r\.db: unable to open database file"]),
    Case("upgrade-not-a-url", ["db", "upgrade", "--db", "notaurl"],
         message=[r"^error: notaurl: could not parse"]),
    Case("report-under-a-file", ["report", "{study}", "--out", "afile/report", "--db", DB],
         study=TINY_STUDY, files=A_FILE, setup=_database,
         message=[r"^error: afile/report: not a directory", r"a file, not a folder"]),
]

WRITING_SQL = [
    _sql("DELETE FROM tasks", "sql-delete"),
    _sql("DROP TABLE artifacts", "sql-drop-table"),
    _sql("UPDATE tasks SET status = 'failed'", "sql-update"),
    _sql("INSERT INTO meta (name, value) VALUES ('x', 'y')", "sql-insert"),
    _sql("CREATE TABLE evil (a)", "sql-create-table"),
    _sql("CREATE TEMP TABLE scratch (a)", "sql-create-temp-table"),
    _sql("ALTER TABLE tasks ADD COLUMN evil TEXT", "sql-alter-table"),
    _sql("DROP VIEW results", "sql-drop-view"),
    _sql("ATTACH DATABASE '{dir}/attached.db' AS x", "sql-attach"),
    _sql("DETACH DATABASE main", "sql-detach", message=r"SQL error"),
    _sql("PRAGMA writable_schema = ON", "sql-pragma-writable-schema"),
    _sql("PRAGMA query_only = OFF", "sql-pragma-query-only-off"),
    _sql("PRAGMA journal_mode = DELETE", "sql-pragma-journal-mode"),
    _sql("PRAGMA user_version = 7", "sql-pragma-user-version"),
    _sql("VACUUM INTO '{dir}/copy.db'", "sql-vacuum-into", message=r"SQL error"),
    _sql("REINDEX", "sql-reindex"),
    _sql("SELEC * FROM tasks", "sql-syntax-error", message=r"syntax error"),
]

OPTIONS_AFTER_COMMAND = [
    Case("results-db-after-command", ["results", "--db", DB], exit=0, setup=_database,
         message=[r"fgbg .*71\.5"]),
    Case("run-db-after-command", ["run", "{study}", "--db", "sqlite:///{dir}/nofolder/r.db",
                                  "--artifacts", "store"],
         study=TINY_STUDY, message=[r"nofolder/r\.db: unable to open"]),
    Case("after-wins-over-before", ["--db", DB, "results", "--db", "sqlite:///other.db"],
         setup=_database, message=[r"no database at sqlite:///other\.db"]),
    Case("plan-artifacts-after-command", ["plan", "{study}", "--artifacts", "store", "--db",
                                          "sqlite:///typo.db"],
         exit=0, study=TINY_STUDY, message=[r"0 cached"]),
    Case("sql-write-documented", ["sql", "--help"], exit=0,
         message=[r"--write", r"read-only unless --write"]),
]

CASES = MISSING + BAD_DATABASES + WRITING_SQL + OPTIONS_AFTER_COMMAND


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def test_unreachable_postgresql_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{_closed_port()}/results"
    output = check_case(Case("postgres-refused", ["results", "--db", url],
                             message=[r"^error: postgresql\+psycopg://alice:\*\*\*@127\.0\.0\.1",
                                      r"refused", r"server is running"]), tmp_path)
    assert "s3cret" not in output


def test_sql_write_commits_only_with_write(tmp_path: Path) -> None:
    path = make_results_db(tmp_path)
    case = Case("sql-write", ["sql", "--write", "DELETE FROM metrics WHERE variant = 'bg'",
                              "--db", DB], exit=0, writes=[r"results\.db$"])
    check_case(case, tmp_path)
    assert db_rows(tmp_path)["results.db:metrics"] == 2  # of 3
    assert path.exists()


def test_run_on_a_full_disk_is_one_paragraph(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's "database or disk is full" at the run's first write: exit 2, what to do."""
    from sqlalchemy.exc import OperationalError

    from runner import db

    def full(*_args: object, **_kwargs: object) -> int:
        raise OperationalError("INSERT INTO runs ...", {},
                               sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(db, "start_run", full)
    case = Case("disk-full-db", ["run", "{study}"], study=TINY_STUDY)
    result = invoke(case, tmp_path, prepare(case, tmp_path))
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]  # after the progress display's first line
    assert last.startswith("error: sqlite:///results.db: database or disk is full. "
                           "Free disk space"), result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    rows = db_rows(tmp_path)
    assert rows["results.db:runs"] == rows["results.db:tasks"] == 0


def test_report_on_a_full_disk_is_one_paragraph(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No space left while the report writes its files: exit 2 naming the file."""
    from runner.report import build

    def full(self: object, relative: str, *_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", f"reports/tiny/{relative}")

    monkeypatch.setattr(build.ReportWriter, "text", full)
    case = Case("disk-full-report", ["report", "{study}", "--db", DB], study=TINY_STUDY,
                setup=_database, writes=[r"^reports/"],
                message=[r"^error: reports/tiny/.*: No space left on device",
                         r"Free disk space"])
    check_case(case, tmp_path)


def test_reading_through_the_library_creates_no_database(tmp_path: Path) -> None:
    import runner.results as R
    from runner.errors import DatabaseMissing

    with pytest.raises(DatabaseMissing, match="no database at"):
        R.results(f"sqlite:///{tmp_path / 'typo.db'}")
    assert list(tmp_path.iterdir()) == []


#: Statements that try to write from a read-only PostgreSQL session, including the ways out of
#: a read-only transaction that one multi-statement string would otherwise open.
POSTGRES_WRITES = [
    "DELETE FROM metrics",
    "SET TRANSACTION READ WRITE; DELETE FROM metrics",
    "COMMIT; BEGIN READ WRITE; DELETE FROM metrics; COMMIT",
    "SET default_transaction_read_only = off; COMMIT; DELETE FROM metrics; COMMIT",
    "COMMIT; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; COMMIT; DELETE FROM metrics",
]


@pytest.mark.parametrize("query", POSTGRES_WRITES)
def test_postgresql_sql_is_read_only(query: str, postgres_url: str,  # noqa: F811
                                     tmp_path: Path) -> None:
    from runner import db

    engine = db.connect(postgres_url)
    run_id = db.start_run(engine, study="s", command="c", provenance={})
    db.claim_task(engine, {"key": "k" * 64, "study": "s", "kind": "fgbg", "kind_version": 1},
                  run_id)
    db.finish_task(engine, "k" * 64, metric_rows=[{"name": "top1", "value": 1.0}],
                   artifact_rows=[], info={}, device="cpu")
    check_case(Case("pg-sql-write", ["sql", query, "--db", postgres_url],
                    message=[r"^error: SQL error: .*(read-only|multiple commands)"]), tmp_path)
    assert db.query(engine, "SELECT count(*) FROM metrics")[1] == [(1,)]
    assert "1" in check_case(Case("pg-sql-read", ["sql", "SELECT count(*) AS n FROM metrics",
                                                  "--db", postgres_url], exit=0), tmp_path)


def test_the_default_database_is_the_one_in_the_working_folder(tmp_path: Path) -> None:
    """`results` in two folders in one process: each reads its own ./results.db (an engine
    cached for a relative URL must not keep serving the first folder's file)."""
    outputs = []
    for name, value in (("one", 71.5), ("two", 99.25)):
        folder = tmp_path / name
        folder.mkdir()
        path = make_results_db(folder)
        con = sqlite3.connect(path)
        con.execute("UPDATE metrics SET value = ? WHERE variant = 'full'", (value,))
        con.commit()
        con.close()
        outputs.append(check_case(Case(f"cwd-{name}", ["results"], exit=0), folder))
    assert "71.5" in outputs[0] and "99.25" not in outputs[0]
    assert "99.25" in outputs[1] and "71.5" not in outputs[1]


def test_a_full_disk_while_a_task_writes_stops_the_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No space left while a task stores an artifact: the run stops there (exit 2, what to
    do), the task in flight is `interrupted` (not `failed`), and the next run finishes it."""
    from runner import db
    from runner.store import MARKER, Store

    real_write = Store._write_atomic

    def full(self: Store, rel: str, data: bytes) -> None:
        if rel == MARKER:  # the store's marker fits; the checkpoint does not
            return real_write(self, rel, data)
        raise OSError(errno.ENOSPC, "No space left on device", str(self.root / rel))

    monkeypatch.setattr(Store, "_write_atomic", full)
    case = Case("disk-full-artifact", ["run", "{study}"], study=TINY_STUDY)
    result = invoke(case, tmp_path, prepare(case, tmp_path))
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in last, result.stderr
    assert "Traceback" not in result.output
    engine = db.connect(f"sqlite:///{tmp_path / 'results.db'}", read_only=True)
    _, rows = db.query(engine, "SELECT kind, status FROM tasks")
    assert rows == [("train", "interrupted")], (rows, result.output)
    monkeypatch.setattr(Store, "_write_atomic", real_write)
    again = invoke(case, tmp_path, tmp_path / "study.yaml")
    assert again.exit_code == 0 and "2 done, 0 failed" in again.output, again.output
