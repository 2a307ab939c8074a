"""visualize's report section: the claim-3 part (paper's sentence, verdicts computed from the
intervals, a figure per model, the site table), the failed optimizations, and the panels'
links into the atlas, built from rows shaped as the kind stores them."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from runner.kinds.visualize import report
from runner.present.atlas_links import layer_page
from runner.present.text import slug
from runner.results.study import StudyData, task_labels

TASKS = [  # (model, site, kept share, naturalness)
    ("vit_a", "mlp", 0.9, 1.2), ("vit_a", "q", 0.1, 8.0),
    ("vit_b", "mlp", 0.5, 2.0), ("vit_b", "k", 0.5, 2.0),
    ("vit_c", "mlp", 0.8, 1.0),
]
LAYERS, FEATURES = (0, 3), (0, 1, 2, 3, 4, 5)
FAILED = ("vit_a", "mlp", 3, 4)  # (model, site, layer, feature)


class Section:
    """A SectionContext that keeps what the section adds."""

    kind = "visualize"

    def __init__(self, data: StudyData, atlas: str | None = None) -> None:
        self.data, self.styles, self.atlas = data, {}, atlas
        self.notes, self.tables, self.figures, self.images, self.links_added = [], [], [], [], []

    def done(self):
        done = self.data.done(self.kind)
        return None if done.empty else done

    def note(self, text):
        self.notes.append(text)

    def table(self, table, *, folded=False):
        self.tables.append(table)

    def figure(self, figure, name, caption):
        self.figures.append((name, figure))

    def image(self, image, name, caption):
        self.images.append((name, image))

    def links(self, caption, links):
        self.links_added.append((caption, links))


def _png(path: Path) -> Path:
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    return path


def _task_rows(key, model, site, kept, natural, rng, store):
    metrics, artifacts = [], []
    for layer in LAYERS:
        for feature in FEATURES:
            failed = (model, site, layer, feature) == FAILED
            values = {"activation": 3.0, "attempts": 3.0 if failed else 1.0,
                      "optimization_failed": float(failed), "natural_max": 3.0 / natural,
                      "naturalness": natural + rng.normal(0, 0.05)}
            values |= {name: (0.0 if failed else kept + rng.normal(0, 0.03))
                       for name in report.SHARES}
            metrics += [dict(task_key=key, kind="visualize", model=model, name=name,
                             variant=None, layer=float(layer), feature=float(feature), x=None,
                             position=None, value=v) for name, v in values.items()]
            metrics.append(dict(task_key=key, kind="visualize", model=model, name="activation",
                                variant="trace", layer=float(layer), feature=float(feature),
                                x=0.0, position=None, value=0.1))
            file = _png(store / f"{key}_{layer}_{feature}.png")
            artifacts.append(dict(task_key=key, role="image", layer=float(layer),
                                  feature=float(feature), rank=None, file=str(file),
                                  path=file.name, sha256="0", bytes=1))
    return metrics, artifacts


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> StudyData:
    store = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    tasks, metrics, artifacts = [], [], []
    for n, (model, site, kept, natural) in enumerate(TASKS):
        key = f"{n:02d}" + "0" * 62
        tasks.append(dict(key=key, study="demo", kind="visualize", model=model, status="done",
                          params=json.dumps({"site": site, "layers": list(LAYERS)}),
                          dataset="val", seed=0, info="{}", error=None))
        m, a = _task_rows(key, model, site, kept, natural, rng, store)
        metrics += m
        artifacts += a
    tasks = pd.DataFrame(tasks)
    return StudyData(study="demo", tasks=tasks, metrics=pd.DataFrame(metrics),
                     artifacts=pd.DataFrame(artifacts), store_root=store,
                     labels=task_labels(tasks))


def test_feature_frame_has_one_row_per_feature_with_its_metrics(data):
    frame = report.feature_frame(data, list(data.tasks["key"]))
    assert len(frame) == len(TASKS) * len(LAYERS) * len(FEATURES)
    row = frame[(frame["model"] == "vit_a") & (frame["site"] == "q")].iloc[0]
    assert row["kept"] == pytest.approx(np.mean([row[s] for s in report.SHARES]))
    assert row["naturalness"] == pytest.approx(8.0, abs=0.3) and row["attempts"] == 1
    assert len(report.succeeded(frame)) == len(frame) - 1


def test_verdicts_follow_the_intervals(data):
    frame = report.feature_frame(data, list(data.tasks["key"]))
    kept = report.site_verdicts(report.site_estimates(frame, "kept"), "above")
    natural = report.site_verdicts(report.site_estimates(frame, "naturalness"), "below")
    # vit_a: mlp keeps 0.9 vs q 0.1; vit_b: equal; vit_c has no q/k/v task: not judged
    assert kept == {"vit_a": "holds", "vit_b": "undecided"}
    assert natural == {"vit_a": "holds", "vit_b": "undecided"}
    reversed_kept = report.site_verdicts(report.site_estimates(frame, "kept"), "below")
    assert reversed_kept["vit_a"] == "does not hold"


def test_the_section_states_the_claim_verdicts_figures_failures_and_tables(data):
    section = Section(data)
    report.build(section)
    notes = "\n".join(section.notes)
    assert report.CLAIM in section.notes
    assert ("mlp above each of q, k, v, 95% intervals apart): holds on vit_a; undecided on "
            "vit_b.") in notes
    assert "vit_a [site=mlp]: 1 of 12 optimizations failed even after their retries " \
           "(layer 3 feature 4)" in notes
    assert [name for name, _ in section.figures] == [
        f"visualize_natural_{slug(m)}" for m in ("vit_a", "vit_b", "vit_c")]
    figure = section.figures[0][1]
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == [report.LABELS[m] for m in ("naturalness", *report.SHARES)]
    q_line = [ln for ln in figure.axes[1].get_lines() if ln.get_label() == "q"][0]
    assert list(q_line.get_xdata()) == [0.0, 3.0]
    assert all(abs(y - 0.1) < 0.05 for y in q_line.get_ydata())
    tables = {t.name: t for t in section.tables}
    cells = tables["visualize_naturalness"].cells
    cell = cells[(cells["model"] == "vit_a") & (cells["site"] == "mlp") & (cells["name"] == "kept")]
    assert cell["n"].item() == 11  # the failed feature is left out
    assert cell["ci_low"].item() < cell["value"].item() < cell["ci_high"].item()
    failures = tables["visualize_failures"].cells
    failed = failures[(failures["column"] == "failed") & (failures["value"] > 0)]
    assert failed[["group", "row"]].values.tolist() == [["vit_a [site=mlp]", "layer 3"]]
    assert len(section.images) == len(TASKS) and section.links_added == []  # no atlas


def test_panels_link_into_the_atlas_when_there_is_one(data):
    section = Section(data, atlas="../../atlas/demo")
    report.build(section)
    caption, links = section.links_added[0]
    assert caption == "vit_a [site=mlp] in the atlas:"
    assert links[0] == ("layer 0", "../../atlas/demo/" + layer_page("vit_a", "mlp", 0))
    assert links[1] == ("feature 0", f"../../atlas/demo/{slug('vit_a')}/mlp-00/"
                        "f00000.html")
    assert len(links) == len(LAYERS) * (1 + len(FEATURES))
    q_caption, q_links = section.links_added[1]
    assert q_caption == "vit_a [site=q] in the atlas:" and "/q-03/f00005.html" in q_links[-1][1]


def test_older_tasks_without_the_new_metrics_get_a_note(data):
    old = data.metrics[data.metrics["name"] == "activation"]
    older = StudyData(study="demo", tasks=data.tasks, metrics=old, artifacts=data.artifacts,
                      store_root=data.store_root, labels=data.labels)
    section = Section(older)
    report.build(section)
    assert any("older version" in n for n in section.notes)
    assert section.figures == []
    assert [t.name for t in section.tables] == ["visualize_activation"]


def test_no_failure_table_when_every_first_attempt_succeeded(data):
    metrics = data.metrics.copy()
    metrics.loc[metrics["name"].isin(["attempts"]), "value"] = 1.0
    metrics.loc[metrics["name"].isin(["optimization_failed"]), "value"] = 0.0
    clean = StudyData(study="demo", tasks=data.tasks, metrics=metrics, artifacts=data.artifacts,
                      store_root=data.store_root, labels=data.labels)
    section = Section(clean)
    report.build(section)
    assert "Every one of the 60 optimizations succeeded at its first attempt." in section.notes
    assert "visualize_failures" not in [t.name for t in section.tables]
