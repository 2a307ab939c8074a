"""The package's architecture, checked from its source: imports flow strictly downward through
the layers below (docs/architecture.md shows the same table), functions stay short, the fused
pass names no kind, and planning never imports torch.

Every import is read with ``ast``: at module top, inside functions and under ``TYPE_CHECKING``
alike, since each of them ties the importing module to the imported one. Imports made from a
computed string (``importlib.import_module``) are not seen; the kind registry's
``report_section`` is the one such place, and it imports a kind's own ``report`` module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runner"

#: Layer of every part of ``runner/``: a folder covers every module under it, a file itself.
#: A module may import from its own layer or any layer below, never above.
LAYERS: dict[str, int] = {
    # 0: pure building blocks, no knowledge of models, data, kinds or the database
    "runner/ops/": 0,
    "runner/store.py": 0,
    "runner/errors.py": 0,
    "runner/schema.py": 0,
    "runner/render.py": 0,
    "runner/present/": 0,
    # 1: models, data, the database and the reading of its results. runner/db.py and
    # runner/migrations/ are one layer: the migrations are the schema history of the database
    # that db.py defines (env.py reads db.metadata), so each may import the other.
    "runner/models/": 1,
    "runner/data/": 1,
    "runner/db.py": 1,
    "runner/dbread.py": 1,  # task states read with sqlite3 on the cached path (no SQLAlchemy)
    "runner/migrations/": 1,
    "runner/results/": 1,
    # 2: the study kinds (declarations, runs, report sections)
    "runner/kinds/": 2,
    # 3: loading and planning a study, executing its tasks
    "runner/plan.py": 3,
    "runner/spec.py": 3,
    "runner/execute/": 3,
    # 4: what the user calls
    "runner/report/": 4,
    "runner/atlas/": 4,  # the static feature atlas, beside the report
    "runner/cli.py": 4,
    "runner/__main__.py": 4,
    "runner/__init__.py": 4,
}

#: Longest a function or method may be, in lines from ``def`` to its last line.
MAX_FUNCTION_LINES = 60
#: Generated Alembic revisions are history, kept as written.
LENGTH_EXEMPT = ("runner/migrations/",)

#: Names the fused pass must not contain, besides every installed kind's name: the kinds and
#: the variants it used to special-case.
FUSED_FORBIDDEN = {"lowpass", "fgbg", "masked", "filtered"}


def layer_of_path(relative: str) -> int | None:
    """The layer of a file under ``runner/`` (``runner/kinds/lowpass/run.py``), or None when
    the table does not place it."""
    if relative in LAYERS:
        return LAYERS[relative]
    folders = [key for key in LAYERS if key.endswith("/") and relative.startswith(key)]
    return LAYERS[max(folders, key=len)] if folders else None


def module_path(module: str) -> str | None:
    """The file of a ``runner`` module (``runner.kinds.base`` -> ``runner/kinds/base.py``,
    a package -> its ``__init__.py``), relative to the repository; None when none exists."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def runner_modules() -> list[Path]:
    """Every Python file of the package."""
    return sorted(RUNNER.rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Import:
    """One import statement's target inside ``runner``: the module it names and where."""

    line: int
    module: str


def _package_of(path: Path) -> list[str]:
    """The package a file belongs to, as dotted parts (what relative imports start from)."""
    return list(path.relative_to(ROOT).parent.parts)


def runner_imports(path: Path, source: str | None = None) -> list[Import]:
    """Every import of a ``runner`` module in ``path`` (or in ``source``, read as if it were
    that file), wherever it stands in the file.

    ``from runner.x import y`` targets ``runner.x.y`` when that is a module (``from runner
    import db``), else ``runner.x``; relative imports are resolved against the file's package.
    """
    found = []
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [Import(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path)
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if module_path(submodule) is not None else base
                found.append(Import(node.lineno, target))
    return [i for i in found if i.module == "runner" or i.module.startswith("runner.")]


def test_every_module_is_placed_in_a_layer():
    unplaced = [relative(p) for p in runner_modules() if layer_of_path(relative(p)) is None]
    assert not unplaced, ("modules under runner/ that the layer table of "
                          f"tests/test_architecture.py does not place: {unplaced}")


def test_imports_flow_downward():
    violations = []
    for path in runner_modules():
        own = layer_of_path(relative(path))
        if own is None:
            continue  # reported by test_every_module_is_placed_in_a_layer
        for imp in runner_imports(path):
            target_path = module_path(imp.module)
            target = None if target_path is None else layer_of_path(target_path)
            if target is None:
                violations.append(f"{relative(path)}:{imp.line}: imports {imp.module}, "
                                  "which is no module of the layer table")
            elif target > own:
                violations.append(f"{relative(path)}:{imp.line}: layer {own} imports "
                                  f"{imp.module} (layer {target})")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_the_layer_checker_sees_every_kind_of_import():
    # The checker itself: top level, inside a function, under TYPE_CHECKING, `from runner
    # import <module>` and relative imports all count (the file is parsed, not written).
    source = ("from typing import TYPE_CHECKING\n"
              "from runner import db\n"
              "if TYPE_CHECKING:\n    from runner.kinds.base import Kind\n"
              "def f():\n    import runner.execute.fused\n"
              "from ..report import build\n")
    found = [(i.line, i.module)
             for i in runner_imports(RUNNER / "ops" / "probe.py", source)]
    assert sorted(found) == [(2, "runner.db"), (4, "runner.kinds.base"),
                             (6, "runner.execute.fused"), (7, "runner.report.build")]
    assert [layer_of_path(module_path(m)) for _, m in sorted(found)] == [1, 2, 3, 4]
    assert layer_of_path("runner/new_module.py") is None
    assert layer_of_path("runner/kinds/lowpass/run.py") == 2


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in runner_modules():
        if relative(path).startswith(LENGTH_EXEMPT):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{relative(path)}:{node.lineno}: {node.name} has {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def _bare(name: str) -> str:
    """An identifier or string as compared with kind names: lower case, without leading or
    trailing underscores (``FILTERED``, ``_masked`` and ``"lowpass"`` all name a kind; an
    ops function such as ``topk_correct`` does not)."""
    return name.strip("_").lower()


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of a module and its classes and functions (prose)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _names_in(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of every identifier and every string constant except docstrings."""
    prose = _docstrings(tree)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            names.append((node.lineno, node.attr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            names.append((node.lineno, node.arg))
        elif isinstance(node, ast.alias):
            names += [(node.lineno, part) for part in (node.name, node.asname) if part]
        elif isinstance(node, ast.keyword) and node.arg:
            names.append((node.value.lineno, node.arg))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in prose):
            names.append((node.lineno, node.value))
    return names


def test_the_fused_pass_names_no_kind():
    from runner.kinds import available_kinds  # reads entry points; imports no kind

    forbidden = FUSED_FORBIDDEN | set(available_kinds())
    path = RUNNER / "execute" / "fused.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = [f"{relative(path)}:{line}: {text!r} names a kind"
             for line, text in _names_in(tree) if _bare(text) in forbidden]
    assert not named, "the fused pass must know no kind by name:\n" + "\n".join(named)


_NO_TORCH = """
import json, sys, traceback

first = []

class Watch:
    # records who imports torch first; imports nothing itself
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not first:
            first.append("".join(traceback.format_stack(limit=12)[:-1]))
        return None

sys.meta_path.insert(0, Watch())
import runner.plan
import runner.spec
from runner.kinds import available_kinds, get_kind

broken = {}
for name in available_kinds():
    try:
        get_kind(name).Params
    except Exception as error:
        broken[name] = f"{type(error).__name__}: {error}"
print(json.dumps({"torch": "torch" in sys.modules, "first": first, "broken": broken,
                  "kinds": available_kinds()}))
"""


def test_planning_and_kind_declarations_do_not_import_torch():
    out = subprocess.run([sys.executable, "-c", _NO_TORCH], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["kinds"], "no kind is installed (pip install -e .)"
    assert not report["broken"], f"kind declarations that cannot be loaded: {report['broken']}"
    assert not report["torch"], ("importing runner.spec, runner.plan and every kind's "
                                 "declaration imported torch, first here:\n"
                                 + "".join(report["first"]))
