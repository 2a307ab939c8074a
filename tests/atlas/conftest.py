"""Fixtures of the atlas tests: a tiny real study (two untrained 2-block ViTs at 32 px), run once
through the CLI into a temporary database, and its atlas built from it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from tests.helpers import TINY_VAL_DATASET, TINY_VIT, write_study

#: Two models (the second one differs only in its dropout: another model id, the same sites),
#: the visualize sweep (two TV weights: two variants), rankings of 5 features of layer 1 on
#: both models, spatial-drop curves of 2 features, and the WordNet numbers of 3 of them
#: (``concepts``: numbers of a kind the atlas does not know by name).
TINY_ATLAS = """\
name: tiny-atlas
datasets:
""" + TINY_VAL_DATASET + TINY_VIT + """\
  vit_b:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2, num_classes: 4,
             drop_rate: 0.1}
studies:
  - kind: visualize
    models: [vit]
    dataset: shapes_val
    params: {layers: [0, 1], features: [0, 1, 2], steps: 2, copies: 1, top_images: 2}
    sweep: {tv_weight: [0.0, 0.01]}
  - kind: topk
    models: [vit, vit_b]
    dataset: shapes_val
    params: {layers: [1], features: {start: 0, stop: 5}, k: 3, render: 1}
  - kind: spatial_drop
    models: [vit]
    dataset: shapes_val
    params: {layers: [1], features: [0, 1], threshold: 0.0, seeds: 1, percents: [0, 50, 100]}
  - kind: concepts
    models: [vit]
    dataset: shapes_val
    params: {layers: [1], features: {start: 0, stop: 3}, k: 3, draws: 20}
"""

#: One more task for the same database: a third TV weight for two features of layer 0.
EXTRA_TASK = """\
  - kind: visualize
    models: [vit]
    params: {layers: [0], features: [1, 2], steps: 2, copies: 1, tv_weight: 0.1}
"""


@dataclass(frozen=True)
class TinyRun:
    """The tiny study's files: its study file, database URL and artifact store."""

    folder: Path
    study: Path
    db: Path
    store: Path

    def args(self, db: Path | None = None) -> list[str]:
        return ["--db", f"sqlite:///{db or self.db}", "--artifacts", str(self.store)]

    def cli(self, *args: str, db: Path | None = None) -> str:
        """Run ``vitstudy`` with this run's database and store; its output (exit 0 asserted)."""
        result = CliRunner().invoke(main, [*self.args(db), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def copy_db(self, to: Path) -> Path:
        """A copy of the database (to add tasks without touching the shared one), through
        SQLite's backup, which includes what is still in its write-ahead log."""
        with closing(sqlite3.connect(self.db)) as source, closing(sqlite3.connect(to)) as copy:
            source.backup(copy)
        return to


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The tiny study, run once (read-only: copy the database to add tasks)."""
    folder = tmp_path_factory.mktemp("atlas-study")
    run = TinyRun(folder, write_study(folder, TINY_ATLAS), folder / "results.db",
                  folder / "artifacts")
    run.cli("run", str(run.study))
    return run


@pytest.fixture(scope="session")
def tiny_atlas(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study's atlas, two features per grid page (read-only)."""
    out = tmp_path_factory.mktemp("atlas") / "tiny-atlas"
    output = tiny_run.cli("atlas", str(tiny_run.study), "--out", str(out), "--per-page", "2")
    assert f"atlas: {(out / 'index.html').resolve()}" in output
    return out
