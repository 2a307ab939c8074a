"""Shared test helpers: a tiny real study and a way to write study files."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

#: The tiny study's model: a 2-block ViT at 32 px, 4 classes, untrained (the ``models:`` block).
TINY_VIT = """\
models:
  vit:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2, num_classes: 4}
"""

#: The tiny world's validation split as a `datasets:` entry (4 classes x 6 images, 32 px).
TINY_VAL_DATASET = """\
  shapes_val:
    kind: synthetic
    split: val
    classes: 4
    train_per_class: 24
    val_per_class: 6
    size: 32
"""

#: A small but real study: a 4-class synthetic world, a 2-block ViT trained for 2 epochs.
TINY_STUDY = """\
name: tiny
datasets:
  shapes:
    kind: synthetic
    split: train
    classes: 4
    train_per_class: 24
    val_per_class: 6
    size: 32
""" + TINY_VAL_DATASET + TINY_VIT + """\
    train: {dataset: shapes, val: shapes_val, epochs: 2, batch_size: 32}
studies:
  - kind: lowpass
    models: [vit]
    dataset: shapes_val
    params: {radii: [2, 8]}
"""

#: The tiny study plus fgbg and cls_isolation: with its lowpass, one fused (model, dataset) group.
TINY_EVALUATIONS = TINY_STUDY + """\
  - kind: fgbg
    models: [vit]
    dataset: shapes_val
  - kind: cls_isolation
    models: [vit]
    dataset: shapes_val
"""


def write_study(folder: Path, text: str, name: str = "study.yaml") -> Path:
    """Write a study file (dedented) and return its path."""
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def run_together(target, args: tuple, n: int, timeout: float = 120.0) -> list:
    """Start ``n`` forked processes of ``target(*args, start, out, release)`` at once; each puts
    one result on ``out`` and then waits for ``release``, so all are alive while the others
    work. Returns the results; asserts every process exited cleanly."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start, release = ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, start, out, release)) for _ in range(n)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=timeout) for _ in procs]
    release.set()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    return results


def make_results_db(folder: Path, name: str = "results.db") -> Path:
    """A real SQLite result database under ``folder`` with one finished run: two done tasks
    (fgbg with two metrics, lowpass with one radius) and one artifact row, written through
    ``runner.db``; its connections are closed so the file's bytes are final. Returns the file."""
    from runner import db

    path = folder / name
    engine = db.connect(f"sqlite:///{path}")
    run_id = db.start_run(engine, study="tiny", command="vitstudy run study.yaml",
                          provenance={"versions": {"torch": "2"}, "device": "cpu"})
    for key, kind, rows in (
        ("a" * 64, "fgbg", [{"name": "top1", "value": 71.5, "variant": "full"},
                            {"name": "top1", "value": 12.25, "variant": "bg"}]),
        ("b" * 64, "lowpass", [{"name": "top1", "value": 40.0, "variant": "lowpass", "x": 8.0}]),
    ):
        db.claim_task(engine, {"key": key, "study": "tiny", "kind": kind, "kind_version": 1,
                               "model": "vit", "dataset": "shapes_val",
                               "params": '{"radii": [8.0]}'}, run_id)
        artifacts = [{"role": "correct", "path": "ab/x.npy", "sha256": "0" * 64, "bytes": 3}]
        db.finish_task(engine, key, metric_rows=rows, info={}, device="cpu",
                       artifact_rows=artifacts if kind == "fgbg" else [])
    db.end_run(engine, run_id, "done")
    engine.dispose()
    return path


class RecordingSection:
    """A section builder's ``SectionContext`` for one kind over loaded ``StudyData``, keeping
    what the section adds (notes, tables, figure names) for the test to read."""

    atlas: str | None = None

    def __init__(self, kind: str, data) -> None:
        self.kind, self.data, self.styles = kind, data, {}
        self.notes, self.tables, self.figures = [], [], []

    def done(self):
        done = self.data.done(self.kind)
        return None if done.empty else done

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self, table, *, folded: bool = False) -> None:
        self.tables.append(table)

    def figure(self, figure, name: str, caption: str) -> None:
        self.figures.append(name)


def load_bench(name: str) -> ModuleType:
    """The script ``bench/<name>.py`` imported as a module (bench/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
