"""The worked example of docs/extending.md: a study kind in its own package
(``examples/vitstudy-contrast``), installed beside vitstudy and found through the
``vitstudy.kinds`` entry-point group, with no edit under ``runner/``.

The package is installed into a temporary folder (``pip install --target``, never into the
project's environment) and the real CLI runs in subprocesses with that folder on
``PYTHONPATH``: ``vitstudy kinds`` lists the kind, ``vitstudy run`` runs it in the fused pass
beside a built-in kind, its rows land in the database with their dimensions, and ``vitstudy
report`` gives it its own section.
"""

from __future__ import annotations

import ast
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_STUDY, write_study

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vitstudy-contrast"
FACTORS = (1.0, 0.5, 0.25, 0.1)

#: The TINY_STUDY's validation world (tests/helpers.py), so the world cache is shared, and a
#: random-init 2-block ViT with 10 classes (no training: the run stays fast; 10 outputs keep
#: top-5 from being 100% by construction). The contrast kind fuses with lowpass's pass.
STUDY = (TINY_STUDY.replace("name: tiny\n", "name: tiny-contrast\n")
         .replace("    train: {dataset: shapes, val: shapes_val, epochs: 2, batch_size: 32}\n", "")
         .replace("num_classes: 4}", "num_classes: 10}")) + """\
  - kind: contrast
    models: [vit]
    dataset: shapes_val
    params: {factors: [0.1, 1, 0.5, 0.25]}
"""


def _env(site: Path) -> dict[str, str]:
    """The test's environment with the example's install folder on the path and no database
    or store set from outside (they default to the working folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VITSTUDY_DB", "VITSTUDY_ARTIFACTS")}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    return env


def vitstudy(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI (``python -m runner``) in a subprocess that sees the installed example."""
    out = subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=_env(site),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"vitstudy {' '.join(args)}: {out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed into a temporary folder (from a copy: pip's build leaves
    ``build/`` and ``*.egg-info`` beside the sources)."""
    base = tmp_path_factory.mktemp("example")
    source = base / "vitstudy-contrast"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def ran(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder where the tiny study was run."""
    work = tmp_path_factory.mktemp("work")
    write_study(work, STUDY)
    vitstudy(site, work, "run", "study.yaml", "--device", "cpu", "--batch-size", "8")
    return work


def test_kinds_lists_the_installed_kind(site, tmp_path):
    listed = vitstudy(site, tmp_path, "kinds").stdout
    block = listed[listed.index("kind: contrast"):].split("---")[0]
    assert "# contrast (version 1): top-1/top-5 when the input's contrast is scaled" in listed
    assert "factors: [1.0, 0.5, 0.25, 0.1]" in block and "normalize: true" in block
    assert "# contrast factors c in [0, 1]" in block  # each field's description, as a comment


def _rows(work: Path) -> list[tuple[str, str | None, float | None, float]]:
    with sqlite3.connect(work / "results.db") as db:
        return db.execute("SELECT name, variant, x, value FROM results WHERE kind = 'contrast' "
                          "ORDER BY name, variant, x").fetchall()


def test_run_stores_the_sweep_with_its_dimensions(ran):
    rows = _rows(ran)
    value = {(name, variant, x): v for name, variant, x, v in rows}
    assert len(value) == len(rows)  # one row per (name, variant, x)
    for name in ("top1", "top5"):
        natural = value[(name, "natural", None)]
        assert {x for n, v, x in value if n == name and v == "contrast"} == set(FACTORS)
        assert value[(name, "contrast", 1.0)] == natural  # c = 1 is the natural input
        for c in FACTORS:
            assert 0.0 <= value[(name, "contrast", c)] <= 100.0
            if natural > 0:
                assert value[(f"{name}_norm", "contrast", c)] == pytest.approx(
                    100.0 * value[(name, "contrast", c)] / natural)
    assert value[("n_images", None, None)] == 24.0
    assert not [v for n, v, x, _ in rows if v is not None and v.startswith("contrast_")], \
        "the factor is a dimension (x), never part of a name"
    with sqlite3.connect(ran / "results.db") as db:
        (status, version, seconds), = db.execute(
            "SELECT status, kind_version, seconds FROM tasks WHERE kind = 'contrast'").fetchall()
        (roles,) = db.execute("SELECT group_concat(a.role) FROM artifacts a JOIN tasks t "
                              "ON t.key = a.task_key WHERE t.kind = 'contrast'").fetchone()
    assert (status, version, roles) == ("done", 1, "correct") and seconds > 0


def test_report_has_the_contrast_section_and_its_table(site, ran):
    vitstudy(site, ran, "report", "study.yaml")
    folder = ran / "reports" / "tiny-contrast"
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert '<section id="contrast">' in page
    assert "Contrast" in page and "Accuracy against contrast" in page
    assert "could not be built" not in page
    table = (folder / "tables" / "contrast.md").read_text(encoding="utf-8")
    assert "c=0.1" in table and "c=1" in table
    with open(folder / "tables" / "contrast.csv", encoding="utf-8") as f:
        header, *lines = f.read().splitlines()
    assert header.startswith("group,row,column,value,ci_low,ci_high")
    assert len(lines) == len(FACTORS) * 4  # top-1, top-5 and both normalized, per factor
    assert (folder / "figures" / "contrast_curves.png").stat().st_size > 0


def test_the_declaration_does_not_import_torch(site, tmp_path):
    code = ("import sys; from runner.kinds import get_kind; kind = get_kind('contrast'); "
            "kind.Params(factors=[0.5]); print('torch' in sys.modules, kind.Params().factors)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(site),
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "(1.0,", "0.5,", "0.25,", "0.1)"], out.stderr


def test_nothing_under_runner_names_the_example():
    # The kind lives wholly in its package: vitstudy gained no line for it. (A name such as
    # BACKGROUND_CONTRAST in the synthetic world is another word, hence the word boundaries.)
    word = re.compile(r"\bcontrast\b|vitstudy[-_]contrast", re.IGNORECASE)
    named = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "runner").rglob("*"))
             if path.is_file() and path.suffix in (".py", ".toml", ".txt", ".md", ".ini")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if word.search(line)]
    named += [f"pyproject.toml:{n}" for n, line in enumerate(
        (ROOT / "pyproject.toml").read_text().splitlines(), 1) if word.search(line)]
    assert not named, f"vitstudy names the example kind: {named}"


#: What a kind outside vitstudy may import of it: the public modules of layers 0-2
#: (docs/architecture.md); of runner.models, the readouts and the model interface's types
#: (``runner.models.base.Preprocess``), not the loaders.
PUBLIC = ("runner.kinds", "runner.models.readouts", "runner.models.base", "runner.ops",
          "runner.present", "runner.results", "runner.errors")


def test_the_example_imports_only_public_lower_layers():
    imported = []
    for path in sorted(EXAMPLE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            imported += [(path.name, node.lineno, n) for n in names if n.split(".")[0] == "runner"]
    assert imported, "the example imports nothing from vitstudy?"
    outside = [i for i in imported if not i[2].startswith(PUBLIC)]
    assert not outside, f"the example imports beyond layers 0-2: {outside}"


def test_the_kind_measures_what_it_says(monkeypatch):
    # In-process, against a direct computation: each factor's accuracy is the model's on
    # m + c (x - m), m each image's mean, as a kind's own unit test would check it.
    import numpy as np
    import torch

    import runner.kinds
    from runner.results.correctness import Correctness
    from tests.eval_helpers import (
        accuracy,
        artifact,
        context,
        metric,
        model_inputs,
        synthetic_val,
        tiny_vit,
    )

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from vitstudy_contrast import KIND
    from vitstudy_contrast.run import scale_contrast

    monkeypatch.setitem(runner.kinds._cache, "contrast", KIND)  # as if installed
    model, dataset = tiny_vit(), synthetic_val()
    ctx = context("contrast", model, dataset, factors=[0.5, 0.1, 1.0, 0.5])
    KIND.run(ctx)

    x, labels = model_inputs(model, dataset)
    scaled = scale_contrast(x, 0.1)
    assert torch.allclose(scaled.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-6)
    assert (scaled.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))).sub(0.1).abs().max() < 1e-4
    with torch.no_grad():
        natural = model(x)
        logits = {c: model(scale_contrast(x, c)) for c in (0.5, 0.1)}
    assert (logits[0.1] - natural).abs().max() > 1e-3  # the variant changes the input
    for k in (1, 5):
        reference = accuracy(natural, labels, k)
        assert metric(ctx, f"top{k}", variant="natural") == reference
        assert metric(ctx, f"top{k}", variant="contrast", x=1.0) == reference
        for c, out in logits.items():
            assert metric(ctx, f"top{k}", variant="contrast", x=c) == accuracy(out, labels, k)
    correct = Correctness.from_arrays(artifact(ctx, "correct"))
    assert {(key.variant, key.k, key.x) for key in correct.hits} == {
        (v, k, c) for k in (1, 5) for v, c in
        [("natural", None), ("contrast", 1.0), ("contrast", 0.5), ("contrast", 0.1)]}
    hits = correct.hits[correct.find("contrast", 5, 0.5)]
    assert 100 * np.mean(hits) == metric(ctx, "top5", variant="contrast", x=0.5)
    assert KIND.Params(factors=[0.1, 1, 0.1]).factors == (1.0, 0.1)
    for bad in ([], [-0.1], [1.5], [math.nan]):
        with pytest.raises(ValueError):
            KIND.Params(factors=bad)
