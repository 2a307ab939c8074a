"""The top-k gallery section, from a real tiny topk run: a figure per ranking and layer showing
the stored overlays (or the kept maps), every image on disk, the other features' values in a
folded table, and links into the atlas only when the report has one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from runner import db
from runner.cli import main
from runner.kinds.ranked_tasks import ranked_tasks
from runner.kinds.topk import report as topk_report
from runner.present.atlas_links import feature_page, layer_page
from runner.present.panels import GridCell, GridRow, PanelCell, image_grid, layer_grid
from runner.report import build_report
from runner.report.html import Section
from runner.report.writer import KindSection, ReportWriter
from runner.results.study import StudyData
from tests.helpers import TINY_VAL_DATASET, TINY_VIT, write_study

#: Two rankings of the tiny ViT's two layers: features 0-11 and 12-15 in two tasks that join
#: into one ranking (k=3; each rendered its first 2), and 0-11 in one that rendered nothing
#: but kept its maps (k=2).
TOPK_STUDY = """\
name: tinytopk
datasets:
""" + TINY_VAL_DATASET + TINY_VIT + """\
studies:
  - kind: topk
    models: [vit]
    dataset: shapes_val
    params: {layers: all, features: {start: 0, stop: 12}, k: 3, render: 2}
  - kind: topk
    models: [vit]
    dataset: shapes_val
    params: {layers: all, features: {start: 0, stop: 12}, k: 2, render: 0}
  - kind: topk
    models: [vit]
    dataset: shapes_val
    params: {layers: all, features: {start: 12, stop: 16}, k: 3, render: 2}
"""
ATLAS = "../../atlas/tinytopk"
ROW = 112 + 20 + 10  # image height, caption strip, gap (runner/present/panels.py)


@dataclass(frozen=True)
class TopkRun:
    url: str
    store: Path
    keys: list[str]


@pytest.fixture(scope="module")
def topk_run(tmp_path_factory: pytest.TempPathFactory) -> TopkRun:
    """The study run for real through the CLI (read-only)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("topk")
    study = write_study(root, TOPK_STUDY)
    url = f"sqlite:///{root / 'r.db'}"
    run = CliRunner().invoke(main, ["--db", url, "--artifacts", str(root / "a"), "run",
                                    str(study)])
    assert run.exit_code == 0, run.output
    _, rows = db.query(db.connect(url), "SELECT key FROM tasks WHERE status = 'done'")
    assert len(rows) == 3
    return TopkRun(url, root / "a", [r[0] for r in rows])


@pytest.fixture(scope="module")
def topk_index(topk_run: TopkRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's report, built once (read-only)."""
    return build_report("tinytopk", topk_run.keys, topk_run.url, topk_run.store,
                        tmp_path_factory.mktemp("report"))


class LinkingSection(KindSection):
    """The report's section context, recording the atlas links a section adds."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.added_links: list[tuple[str, list[tuple[str, str]]]] = []

    def links(self, label: str, links) -> None:
        self.added_links.append((label, list(links)))


def _section(topk_run: TopkRun, out: Path, atlas: str | None) -> tuple[LinkingSection, Section]:
    data = StudyData.load("tinytopk", topk_run.keys, topk_run.url, topk_run.store)
    section = Section("topk", "t", "")
    ctx = LinkingSection("topk", data, {}, ReportWriter(out), section, n_boot=10, seed=0,
                         atlas=atlas)
    topk_report.build(ctx)
    return ctx, section


def _values(topk_run: TopkRun) -> pd.DataFrame:
    cols, rows = db.query(db.connect(topk_run.url),
                          "SELECT task_key, layer, feature, position, value FROM metrics "
                          "WHERE name = 'topk_value'")
    return pd.DataFrame(rows, columns=cols)


def test_the_section_shows_a_gallery_per_ranking_and_layer(topk_index):
    index = topk_index
    html = index.read_text()
    section = re.search(r'<section id="topk">(.*?)</section>', html, re.S).group(1)
    sources = re.findall(r'<img src="([^"]+)"', section)
    assert len(sources) == 4  # 2 rankings x 2 layers
    sizes = sorted(Image.open(index.parent / s).size for s in sources)
    # overlays of 2 + 2 features x 3 images; maps of the first 8 features x 2 images
    assert sizes == [(84 + 2 * 122, 10 + 8 * ROW)] * 2 + [(84 + 3 * 122, 10 + 4 * ROW)] * 2
    for source in sources:
        assert (index.parent / source).is_file()
        assert f'href="{source}"' in section
    assert "vit [k=3], mlp layer 0" in section and "vit [k=2], mlp layer 1" in section
    assert "atlas" not in section  # no atlas built: no link into one
    assert "vit [k=3]: 32 features ranked, 8 shown; vit [k=2]: 24 features ranked, 16 shown" in (
        section)
    assert '<div class="note">' not in section and "<details>" in section


def test_the_gallery_cells_are_the_stored_overlays(topk_run, tmp_path):
    data = StudyData.load("tinytopk", topk_run.keys, topk_run.url, topk_run.store)
    (ranking,) = [r for r in ranked_tasks(data, data.done("topk"))
                  if r.label == "vit [k=3]"]
    values = topk_report.ranking_values(data, ranking)
    scores = topk_report.layer_scores(values[values["layer"] == 1])
    rows = topk_report.overlay_rows(data, ranking, 1, scores)
    assert list(rows) == [0, 1, 12, 13]  # from both tasks of the ranking
    assert len(ranking.keys) == 2
    truth = _values(topk_run)
    truth = truth[truth.task_key.isin(ranking.keys) & (truth.layer == 1) & (truth.feature == 1)]
    assert len(truth) == 3
    best = truth.sort_values("position").value.tolist()
    assert [c.caption for c in rows[1].cells] == [f"#{r + 1}  {v:.2f}" for r, v in enumerate(best)]
    overlays = pd.concat([data.files(k, "overlay") for k in ranking.keys])
    first = overlays[(overlays.layer == 1) & (overlays.feature == 1) & (overlays["rank"] == 0)]
    assert rows[1].cells[0].image == Path(first.file.iloc[0])
    # a file gone from the store is left out, not fatal
    data.artifacts.loc[first.index, "file"] = str(tmp_path / "gone.png")
    rows = topk_report.overlay_rows(data, ranking, 1, scores)
    assert [c.caption[:2] for c in rows[1].cells] == ["#2", "#3"]


def test_the_table_holds_the_features_not_shown(topk_run, topk_index):
    table = pd.read_csv(topk_index.parent / "tables" / "topk_values.csv")
    # k=3: 16 - 4 shown per layer; k=2: 12 - 8 shown per layer; two columns each
    assert table.groupby("group").size().to_dict() == {"vit [k=3]": 2 * 2 * 12,
                                                       "vit [k=2]": 2 * 2 * 4}
    truth = _values(topk_run)
    for cell in table.itertuples():
        layer, feature = (int(n) for n in re.findall(r"\d+", cell.row))
        mine = truth[(truth.task_key == cell.task_key) & (truth.layer == layer)
                     & (truth.feature == feature)].sort_values("position")
        expected = mine.value.iloc[0] if cell.column == "best image" else mine.value.mean()
        assert cell.value == pytest.approx(expected, abs=1e-9)
    features = table.row.str.extract(r"feature (\d+)")[0].astype(int)
    assert features[table.group == "vit [k=3]"].min() == 2  # 0 and 1 are in the gallery
    assert features[table.group == "vit [k=2]"].min() == 8  # the first 8 are in the gallery


def test_links_into_the_atlas_only_when_it_is_set(topk_run, tmp_path):
    without, _ = _section(topk_run, tmp_path / "a", None)
    assert without.added_links == []
    ctx, section = _section(topk_run, tmp_path / "b", ATLAS)
    by_label = dict(ctx.added_links)
    assert set(by_label) == {f"vit [k={k}], layer {layer} in the atlas:"
                             for k in (2, 3) for layer in (0, 1)}
    for layer in (0, 1):
        links = by_label[f"vit [k=3], layer {layer} in the atlas:"]
        assert links == [(f"layer {layer}", f"{ATLAS}/{layer_page('vit', 'mlp', layer)}")] + [
            (f"feature {f}", f"{ATLAS}/{feature_page('vit', 'mlp', layer, f)}")
            for f in (0, 1, 12, 13)]
        maps = by_label[f"vit [k=2], layer {layer} in the atlas:"]
        assert [text for text, _ in maps[1:]] == [f"feature {f}" for f in range(8)]
    assert all(href.startswith(ATLAS + "/vit_") for _, links in ctx.added_links
               for _, href in links)
    assert len([b for b in section.blocks if hasattr(b, "path")]) == 4


def test_image_grid_places_captioned_rows():
    red, blue = Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (20, 10), (0, 0, 255))
    rows = [GridRow("a", (GridCell(red, "x"), GridCell(blue))), GridRow("b", (GridCell(red),))]
    grid = np.asarray(image_grid(rows, height=40))
    assert grid.shape == (10 + 2 * (40 + 20 + 10), 84 + 50 + 90, 3)
    assert tuple(grid[10 + 20 + 5, 84 + 5]) == (255, 0, 0)  # row a, first cell
    assert tuple(grid[10 + 20 + 5, 84 + 50 + 5]) == (0, 0, 255)  # row a, second (twice as wide)
    assert tuple(grid[10 + 70 + 20 + 5, 84 + 5]) == (255, 0, 0)  # row b
    long = image_grid([GridRow("feature 123456789", (GridCell(red),))], height=40)
    assert long.width > 84 + 50  # a long label widens the label column


def test_layer_grid_keeps_its_layout(tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (64, 32), (0, 128, 0)).save(path)
    cells = [PanelCell(layer, f, path, 1.0) for layer in (2, 0) for f in range(10)]
    grid = layer_grid(cells, height=50, max_features=3)
    assert grid.size == (84 + 3 * (100 + 10), 10 + 2 * (50 + 20 + 10))
    assert tuple(np.asarray(grid)[10 + 20 + 25, 84 + 50]) == (0, 128, 0)
