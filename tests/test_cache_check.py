"""Planning and the cache check in bulk: what a 10,000-task rerun relies on, without timing it
(the figures are ``bench/noop_rerun.py``'s): a bounded number of SQL statements whatever the
number of tasks, each sweep combination validated once, keys that are the hash of their parts,
and a cached ``vitstudy run`` that imports neither torch nor timm."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import yaml
from sqlalchemy import event

from bench.noop_rerun import fill, heavy_imports
from runner import db, dbread
from runner.errors import ExpansionError, SpecError
from runner.kinds import get_kind
from runner.plan import cache_status, make_plan, task_key
from runner.spec import expanded_size, gc_paused, load_study
from runner.store import Store
from tests.helpers import TINY_EVALUATIONS, write_study


def _statements_of_cache_check(work: Path, tasks: int) -> tuple[int, int]:
    """(SQL statements sent, tasks found cached) by one cache check of a filled study."""
    study = fill(work, tasks)
    plan = make_plan(load_study(study))
    engine = db.connect(f"sqlite:///{work / 'results.db'}", read_only=True)
    sent: list[str] = []

    def count(*args: object) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        status = cache_status(plan, engine, Store(work / "artifacts"))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(sent), sum(s.cached for s in status.values())


def test_cache_check_sends_as_many_statements_for_500_tasks_as_for_50(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small, cached_small = _statements_of_cache_check(tmp_path / "a", 50)
    big, cached_big = _statements_of_cache_check(tmp_path / "b", 500)
    assert (cached_small, cached_big) == (50, 500)
    assert small == big <= 3  # BEGIN, then one SELECT per table


def test_cache_check_finds_missing_and_resized_artifacts(tmp_path: Path) -> None:
    study = fill(tmp_path, 6)
    plan = make_plan(load_study(study))
    engine = db.connect(f"sqlite:///{tmp_path / 'results.db'}", read_only=True)
    paths = {k: s.artifacts[0][1] for k, s in db.task_states(engine).items()}
    gone, resized = plan.tasks[1].key, plan.tasks[4].key
    (tmp_path / "artifacts" / paths[gone]).unlink()
    (tmp_path / "artifacts" / paths[resized]).write_bytes(b"other size")
    status = cache_status(plan, engine, Store(tmp_path / "artifacts"))
    assert {k for k, s in status.items() if not s.cached} == {gone, resized}
    assert {status[gone].reason, status[resized].reason} == {"artifacts missing"}


def test_each_sweep_combination_is_validated_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    params_cls = get_kind("lowpass").Params
    validate = params_cls.model_validate
    calls: list[object] = []

    def counting(cls: type, obj: object, *args: object, **kwargs: object) -> object:
        calls.append(obj)
        return validate(obj, *args, **kwargs)

    monkeypatch.setattr(params_cls, "model_validate", classmethod(counting))
    data = yaml.safe_load(TINY_EVALUATIONS)
    data["studies"][0]["sweep"] = {"radii": [[r] for r in range(1, 31)], "highpass": [True, False]}
    plan = make_plan(load_study(write_study(tmp_path, yaml.safe_dump(data))))
    assert len(calls) == 60
    assert sum(t.kind == "lowpass" for t in plan.tasks) == 60


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_key_is_the_hash_of_its_parts(tmp_path: Path, precision: str) -> None:
    data = yaml.safe_load(TINY_EVALUATIONS)
    data["models"]["vit2"] = dict(data["models"]["vit"], train=None)
    data["studies"][0].update(models=["vit", "vit2"], sweep={"filter": ["ideal", "gaussian"]})
    loaded = load_study(write_study(tmp_path, yaml.safe_dump(data)))
    plan = make_plan(loaded, precision=precision)
    assert len(plan.tasks) == 1 + 2 * 2 + 2
    for task in plan.tasks:
        assert task.key == task_key(task.key_parts)
        precise = precision != "fp32" and task.kind != "train"
        assert ("precision" in task.key_parts) == precise


def test_gc_is_back_on_after_loading_planning_and_a_failure(tmp_path: Path) -> None:
    assert gc.isenabled()
    plan = make_plan(load_study(write_study(tmp_path, TINY_EVALUATIONS)))
    assert plan.tasks and gc.isenabled()
    with pytest.raises(SpecError):
        load_study(write_study(tmp_path, TINY_EVALUATIONS.replace("radii: [2, 8]", "radii: []"),
                               "bad.yaml"))
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_expansion_limit_below_one_still_counts_scalars() -> None:
    with pytest.raises(ExpansionError, match="past 0 values"):
        expanded_size(yaml.compose("just a scalar"), 0)
    assert expanded_size(yaml.compose("[1, [2, 3], {a: b}]"), 8) == 8


def test_a_cached_run_imports_neither_torch_timm_nor_sqlalchemy(tmp_path: Path) -> None:
    study = fill(tmp_path, 20)
    env = dict(os.environ, VITSTUDY_DB=f"sqlite:///{tmp_path / 'results.db'}",
               VITSTUDY_ARTIFACTS=str(tmp_path / "artifacts"), HF_HUB_OFFLINE="1")
    assert heavy_imports(study, tmp_path, env) == {"torch": False, "timm": False,
                                                   "sqlalchemy": False}


#: Documents the plain-node constructor must read exactly as PyYAML's loader does (or hand back
#: to it): scalars of every tag, aliases, merge keys, explicit tags, odd keys, errors.
YAML_CASES = [
    "a: 1\nb: [0, 7, 012, 0x1f, 0b101, -3, +4, 1_000, '5', 1:30, 2.5, .inf, -.nan, 1e3]\n",
    "flags: [yes, No, true, off, ~, null, '']\nwhen: 2001-12-14\ntext: !!str 12\n",
    "base: &b {x: 1, y: [1, 2]}\nother: *b\nmerged: {<<: *b, z: 3}\nseq: &s [a, b]\nagain: *s\n",
    "? [1, 2]\n: unhashable\n",
    "? {a: 1}\n: value\n",
    "'=': plain\nset: !!set {a, b}\npairs: !!omap [{a: 1}, {b: 2}]\nblob: !!binary aGk=\n",
    "tagged: !custom 1\n",
    "digits: ١٢\nsuper: ²\nnested: [[[[1]]], {a: {b: {c: [d]}}}]\n",
    "just a scalar",
    "- 1\n- [2, 3]\n- {a: b}\n",
]


def _load_with(construct: object, text: str) -> tuple[str, object]:
    """What constructing ``text``'s document gives: ("ok", data) or (error type, message)."""
    from runner import spec

    node = yaml.compose(text, Loader=spec._Loader)
    try:
        return "ok", construct(spec._Loader(""), node)
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return type(error).__name__, str(error)


@pytest.mark.parametrize("text", YAML_CASES)
def test_plain_constructor_reads_as_the_loader_does(text: str) -> None:
    from runner import spec

    mine = _load_with(spec._construct, text)
    theirs = _load_with(lambda loader, node: loader.construct_document(node), text)
    assert repr(mine) == repr(theirs)  # repr: NaN compares unequal to itself


def test_plain_constructor_shares_aliased_collections() -> None:
    from runner import spec

    node = yaml.compose("a: &x [1]\nb: *x\nc: &y {k: v}\nd: *y\n", Loader=spec._Loader)
    data = spec._construct(spec._Loader(""), node)
    assert data["a"] is data["b"] and data["c"] is data["d"]


@pytest.mark.parametrize("text", YAML_CASES[:3] + YAML_CASES[7:])
def test_tree_size_is_the_expanded_size_of_a_document_without_aliases(text: str) -> None:
    from runner import spec

    text = text.replace("*b", "{x: 1}").replace("*s", "[a]")
    node = yaml.compose(text, Loader=spec._Loader)
    assert "*" not in text
    assert spec._tree_size(node) == expanded_size(node, 10**6)


def _three_walks(text: str, limit: int) -> tuple[str, object, object]:
    """What the walks ``_read_tree`` stands for give: ("ok", lines, data) or the error."""
    from runner import spec

    node = yaml.compose(text, Loader=spec._Loader)
    lines: dict[tuple, int] = {}
    try:
        spec._check_expansion(Path("x.yaml"), node, limit, aliases=False)
        spec._walk_lines(Path("x.yaml"), node, (), lines)
        return "ok", lines, spec._construct(spec._Loader(""), node)
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return type(error).__name__, str(error), None


TREE_CASES = [text for text in YAML_CASES if "*" not in text] + [
    "a: 1\na: 2\n", "a: {b: [1, {c: 2, c: 3}]}\n", "1: a\n01: b\n", "a: 2001-12-14\n",
    "root: ${HOME}\nboxes: \"\\x24{HOME}\"\nk: [$, 'x']\n", "'${K}': 1\n", "[" * 200 + "]" * 200,
]


@pytest.mark.parametrize("limit", [10**6, 6, 1])
@pytest.mark.parametrize("text", TREE_CASES)
def test_one_walk_of_a_tree_reads_it_as_the_three_walks_do(text: str, limit: int) -> None:
    from runner import spec

    node = yaml.compose(text, Loader=spec._Loader)
    expected = _three_walks(text, limit)
    lines: dict[tuple, int] = {}
    try:
        data, dollars = spec._read_tree(node, lines, limit)
    except Exception:  # noqa: BLE001 - then the three walks run, as before
        return
    assert expected[0] == "ok" and repr((lines, data)) == repr(expected[1:])
    if isinstance(data, dict) and not dollars:  # then interpolating changes nothing
        assert repr(spec._interpolate(Path("x.yaml"), data, lines, ())) == repr(data)


def test_the_plans_encoder_writes_canonical_json() -> None:
    from runner.plan import _canonical_tree, canonical_json

    for value in ({"b": [1.0, 2, None], "a": {"z": True, "é": "ß\n\u2028"}}, [], {}, "x\x00",
                  {"radii": [0.1, 1e-300, 1e300, float("inf")], "n": -0.0, "k": 2**70},
                  {"dataset": {"dataset": "synthetic:abc"}, "1": [[], [{}]]}):
        assert _canonical_tree(value) == canonical_json(value)


def test_an_alias_free_study_past_the_node_limit_fails_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner import spec

    path = write_study(tmp_path, TINY_EVALUATIONS)
    node = yaml.compose(path.read_text(), Loader=spec._Loader)
    with pytest.raises(ExpansionError) as direct:
        expanded_size(node, 40)
    monkeypatch.setattr(spec, "MAX_YAML_NODES", 40)
    with pytest.raises(SpecError) as loading:
        load_study(path)
    assert loading.value.line == direct.value.line
    assert f"here {direct.value}" in str(loading.value)


# ----------------------------------------------------- reading SQLite without SQLAlchemy


def _sorted_states(states: dict | None) -> dict | None:
    """Task states with each task's artifacts sorted (rows come back in no fixed order)."""
    return None if states is None else {
        k: (s.status, sorted(s.artifacts)) for k, s in states.items()}


def _mixed_database(work: Path, tasks: int = 12) -> tuple[str, list[str]]:
    """A filled study's database with a failed task, a task without its row and one without
    artifacts; its URL and the plan's keys (and one key of no task)."""
    import sqlite3

    plan = make_plan(load_study(fill(work, tasks)))
    keys = [t.key for t in plan.tasks]
    with sqlite3.connect(work / "results.db") as conn:
        conn.execute("UPDATE tasks SET status = 'failed' WHERE key = ?", (keys[0],))
        conn.execute("DELETE FROM metrics WHERE task_key = ?", (keys[1],))
        conn.execute("DELETE FROM artifacts WHERE task_key = ?", (keys[1],))
        conn.execute("DELETE FROM tasks WHERE key = ?", (keys[1],))
        conn.execute("DELETE FROM artifacts WHERE task_key = ?", (keys[2],))
    return f"sqlite:///{work / 'results.db'}", [*keys, "0" * 64]


def test_direct_read_gives_what_the_engine_gives(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, keys = _mixed_database(tmp_path)
    engine = db.connect(url, read_only=True)
    for asked in (keys, keys[:4], []):
        through_engine = _sorted_states(db.task_states(engine, asked))
        assert _sorted_states(dbread.sqlite_task_states(url, asked)) == through_engine
    monkeypatch.setattr(dbread, "_SCAN_FROM", 1)  # both tables read whole
    for asked in (keys, keys[:8]):  # keys[:8]: a scan that finds tasks not asked for
        states = _sorted_states(dbread.sqlite_task_states(url, asked))
        assert states == _sorted_states(db.task_states(engine, asked))
        assert set(states) == set(asked[:12]) - {asked[1]}  # not the one without its row
    monkeypatch.chdir(tmp_path)  # a relative path, as the default URL is
    assert dbread.sqlite_task_states("sqlite:///results.db", keys) is not None


def _older_schema(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?",
                     (db.revision_id(db.SCHEMA_VERSION - 1),))


@pytest.mark.parametrize("case", ["postgres", "memory", "query", "escaped", "file-uri",
                                  "missing", "not-a-database", "no-tables", "older-schema"])
def test_direct_read_declines_what_it_does_not_know(tmp_path: Path, case: str) -> None:
    import sqlite3

    url, keys = _mixed_database(tmp_path, 3)
    path = tmp_path / "results.db"
    other = tmp_path / "other.db"
    urls = {"postgres": "postgresql://user@host/db", "memory": "sqlite://",
            "query": f"{url}?timeout=5", "escaped": url.replace("results", "result%73"),
            "file-uri": f"sqlite:///file:{path}?mode=ro&uri=true", "missing": f"sqlite:///{other}",
            "not-a-database": f"sqlite:///{other}", "no-tables": f"sqlite:///{other}",
            "older-schema": url}
    if case == "not-a-database":
        other.write_text("id,value\n" * 100)
    elif case == "no-tables":
        sqlite3.connect(other).execute("PRAGMA user_version = 1").connection.close()
    elif case == "older-schema":
        _older_schema(path)
    assert dbread.sqlite_task_states(urls[case], keys) is None


def test_urls_read_directly_name_the_file_sqlalchemy_names() -> None:
    for url in ("sqlite:///results.db", "sqlite:////tmp/a b/r.db", "sqlite:///./x-1+2~.db",
                "sqlite:///a%20b.db", "sqlite:///C:/x.db", "sqlite:///x@y.db", "sqlite://",
                "sqlite+pysqlite:///r.db", "sqlite:///r.db?mode=ro"):
        found = dbread._PLAIN_SQLITE.fullmatch(url)
        assert found is None or found[1] == db.sqlite_file(url), url
