"""Each table against the database rows it came from, and its intervals against the arrays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from report_rows import DEPTH, GRID, RADII, fill_study

from runner import results
from runner.kinds.cls_isolation import report as cls_report
from runner.kinds.fgbg import report as fgbg_report
from runner.kinds.lowpass import report as lowpass_report
from runner.kinds.spatial_drop import report as spatial_report
from runner.present import tables
from runner.present.bootstrap import PairedBootstrap
from runner.present.paper import TABLE1, TABLE2
from runner.results.correctness import Correctness, HitsKey
from runner.results.intervals import with_intervals
from runner.results.study import StudyData, task_labels

TABLE1_COLUMNS = ["Natural", "Isolating CLS", "Patch Average", "Patch Maximum",
                  "Head on mean patch token"]


@pytest.fixture(scope="module")
def data(filled_study):
    return StudyData.load(filled_study.study, filled_study.task_keys, filled_study.engine,
                          filled_study.store_root, filled_study.model_names)


def db_value(engine, key, name, variant=None, x=None, position=None):
    """The single metric value the database holds for these dimensions."""
    rows = results.results(engine, task_keys=[key], name=name)
    for column, wanted in (("variant", variant), ("x", x), ("position", position)):
        rows = rows[rows[column].isna()] if wanted is None else rows[rows[column] == wanted]
    assert len(rows) == 1, rows
    return float(rows["value"].iloc[0])


def ci(arrays, name, seed=0):
    return PairedBootstrap({name: arrays[name]}, seed=seed).accuracy(name)


def isolation_intervals(data):
    return with_intervals(data, "cls_isolation", derived=cls_report.DERIVED)


def fgbg_intervals(data):
    return with_intervals(data, "fgbg", reference=fgbg_report.REFERENCE)


def test_correctness_keys_are_data_not_names():
    hits = {HitsKey("lowpass", 1, 8.0): np.ones(3, bool),
            HitsKey("isolated", 5, 11.0): np.zeros(3, bool),
            HitsKey("patch_mean_token", 1): np.ones(3, bool),
            HitsKey("fg", 5): np.zeros(3, bool),
            HitsKey("gaussian", 1, 0.5): np.ones((3, 4), bool)}
    read = Correctness.from_arrays(Correctness(np.arange(3), hits).to_arrays())
    assert set(read.hits) == set(hits)
    assert read.find("lowpass", 1, 8) == HitsKey("lowpass", 1, 8.0)  # 8 from SQL is 8.0
    assert read.find("isolated", 5, 11.0) == HitsKey("isolated", 5, 11.0)
    assert read.find("patch_mean_token", 1) == HitsKey("patch_mean_token", 1)
    assert read.find("fg", 1) is None and read.find("lowpass", 1) is None
    assert read.hits[HitsKey("gaussian", 1, 0.5)].shape == (3, 4)
    np.testing.assert_array_equal(read.index, np.arange(3))


def test_table1_against_rows(data, filled_study):
    cells = cls_report.table1(data, isolation_intervals(data))
    assert list(dict.fromkeys(cells["column"])) == TABLE1_COLUMNS
    assert set(cells["row"]) == {"Top-1", "Top-5"}
    assert len(cells) == 2 * 2 * len(TABLE1_COLUMNS)  # two models
    variants = {"Natural": ("natural", None), "Isolating CLS": ("isolated", DEPTH - 1.0),
                "Patch Average": ("patch_average", None), "Patch Maximum": ("patch_maximum", None),
                "Head on mean patch token": ("patch_mean_token", None)}
    for model in ("vit_b16", "vit_s"):
        key = filled_study.keys[("cls_isolation", model)]
        mine = cells[cells["task_key"] == key]
        assert mine["group"].iloc[0] == f"{model}: CLS joins at layer L={DEPTH - 1}"
        for cell in mine.itertuples():
            k = "top1" if cell.row == "Top-1" else "top5"
            variant, x = variants[cell.column]
            assert cell.value == db_value(filled_study.engine, key, k, variant, x)
            if model == "vit_b16":
                assert cell.paper == TABLE1["ViT-B/16"][(k, variant)]
                assert cell.paper_match == "exact"
            else:
                assert np.isnan(cell.paper)


def test_table1_intervals_come_from_the_matching_arrays(data, filled_study):
    key = filled_study.keys[("cls_isolation", "vit_b16")]
    arrays = filled_study.arrays[key]
    cells = cls_report.table1(data, isolation_intervals(data))
    cells = cells[cells["task_key"] == key].set_index(["row", "column"])
    natural = cells.loc[("Top-1", "Natural")]
    assert (natural.ci_low, natural.ci_high) == pytest.approx(ci(arrays, "natural_top1"))
    isolated = cells.loc[("Top-5", "Isolating CLS")]
    expected = ci(arrays, f"isolated_{DEPTH - 1}_top5")
    assert (isolated.ci_low, isolated.ci_high) == pytest.approx(expected)
    boot = PairedBootstrap({"p": arrays["patch_top1"]})
    best = cells.loc[("Top-1", "Patch Maximum")]
    assert (best.ci_low, best.ci_high) == pytest.approx(boot.position_maximum("p"))
    average = cells.loc[("Top-1", "Patch Average")]
    assert (average.ci_low, average.ci_high) == pytest.approx(boot.position_average("p"))
    assert average.ci_low < average.value < average.ci_high


@pytest.mark.parametrize("params, layers, depth, chosen", [
    ({"layers": None}, [0, 1, 2, 3, 4], None, 3),  # default sweep 0..depth: depth - 1
    ({"layers": [11, 12]}, [11, 12], 12, 11),  # never the largest (12: CLS never sees the image)
    ({"layers": [3]}, [3], 12, 11),  # depth - 1 whether measured or not (table1 says "not")
    ({"layers": [2, 5]}, [2, 5], None, None),  # an explicit list, depth not recorded: unknown
    ({"layers": None}, [], None, None),
])
def test_table1_insertion_layer(params, layers, depth, chosen):
    assert cls_report.table1_insertion_layer(params, layers, depth) == chosen


def test_isolation_curve_against_rows(data, filled_study):
    curve = cls_report.isolation_curve(data, isolation_intervals(data))
    key = filled_study.keys[("cls_isolation", "vit_s")]
    mine = curve[(curve["task_key"] == key) & (curve["column"] == "Top-1")]
    assert list(mine["x"]) == [float(layer) for layer in range(DEPTH + 1)]
    assert list(mine["row"]) == [f"L={layer}" for layer in range(DEPTH + 1)]
    for cell in mine.itertuples():
        assert cell.value == db_value(filled_study.engine, key, "top1", "isolated", cell.x)
    assert mine["value"].iloc[0] == db_value(filled_study.engine, key, "top1", "natural")


def test_patch_grid_against_rows_and_array(data, filled_study):
    key = filled_study.keys[("cls_isolation", "vit_b16")]
    grid = cls_report.patch_accuracy_grid(data, key)
    assert grid.shape == (2, *GRID)
    for position in range(GRID[0] * GRID[1]):
        row, col = divmod(position, GRID[1])  # positions are row-major
        assert grid[0, row, col] == db_value(filled_study.engine, key, "top1", "patch",
                                             position=position)
    stored = np.load(data.first_file(key, "patch_accuracy"))
    np.testing.assert_allclose(grid, stored, rtol=1e-6)
    assert grid[0].max() == pytest.approx(db_value(filled_study.engine, key, "top1",
                                                   "patch_maximum"))


def test_table2_against_rows(data, filled_study):
    cells = fgbg_report.table2(data, fgbg_intervals(data))
    assert list(dict.fromkeys(cells["column"])) == [
        "Full image (top-5)", "Foreground (norm. top-5)", "Background (norm. top-5)"]
    assert list(dict.fromkeys(cells["group"])) == ["ViTs", "CNNs"]
    assert list(dict.fromkeys(cells["row"])) == ["vit_b16", "vit_s", "resnet50", "mobilenet"]
    paper = {"vit_b16": ("ViT-B/16", "exact"), "resnet50": ("ResNet-50", "exact"),
             "mobilenet": ("MobileNetV2", "architecture")}
    which = {"Full image (top-5)": ("top5", "full"),
             "Foreground (norm. top-5)": ("top5_norm", "fg"),
             "Background (norm. top-5)": ("top5_norm", "bg")}
    for cell in cells.itertuples():
        name, variant = which[cell.column]
        assert cell.value == db_value(filled_study.engine, cell.task_key, name, variant)
        if cell.row in paper:
            label, match = paper[cell.row]
            assert cell.paper == TABLE2[label][variant]
            assert (cell.paper_model, cell.paper_match) == (label, match)
        else:
            assert np.isnan(cell.paper)


def test_table2_normalized_interval_is_the_paired_ratio(data, filled_study):
    key = filled_study.keys[("fgbg", "resnet50")]
    arrays = filled_study.arrays[key]
    cells = fgbg_report.table2(data, fgbg_intervals(data))
    bg = cells[(cells["task_key"] == key) & (cells["column"] == "Background (norm. top-5)")]
    boot = PairedBootstrap({"bg": arrays["bg_top5"], "full": arrays["full_top5"]})
    assert (bg["ci_low"].iloc[0], bg["ci_high"].iloc[0]) == pytest.approx(boot.ratio("bg", "full"))
    assert bg["value"].iloc[0] == pytest.approx(
        100 * arrays["bg_top5"].mean() / arrays["full_top5"].mean())


def test_fgbg_raw_against_rows(data, filled_study):
    cells = fgbg_report.fgbg_raw(data, fgbg_intervals(data))
    assert len(cells) == 4 * 6
    for cell in cells.itertuples():
        assert cell.value == db_value(filled_study.engine, cell.task_key, cell.name, cell.variant)
        assert cell.column == f"{tables.TOPK_LABEL[cell.name]} " + {
            "full": "Full", "fg": "Foreground", "bg": "Background"}[cell.variant]


def test_lowpass_points_against_rows(data, filled_study):
    points = lowpass_report.lowpass_points(data, with_intervals(data, "lowpass"))
    assert filled_study.failed_key not in set(points["task_key"])
    vit = filled_study.keys[("lowpass", "vit_b16")]
    assert list(dict.fromkeys(points[points["task_key"] == vit]["variant"])) == [
        "lowpass", "highpass"]
    assert len(points) == (2 + 1 + 1) * len(RADII) * 4  # variants x radii x 4 metrics
    for cell in points.itertuples():
        assert cell.value == db_value(filled_study.engine, cell.task_key, cell.name,
                                      cell.variant, cell.x)
    arrays = filled_study.arrays[vit]
    norm = points[(points["task_key"] == vit) & (points["name"] == "top1_norm")
                  & (points["variant"] == "lowpass") & (points["x"] == 8.0)].iloc[0]
    boot = PairedBootstrap({"f": arrays["lowpass_8_top1"], "n": arrays["natural_top1"]})
    assert (norm.ci_low, norm.ci_high) == pytest.approx(boot.ratio("f", "n"))
    assert set(points[points["model"] == "resnet50"]["family"]) == {"CNN"}


def test_spatial_tables_against_rows(data, filled_study):
    key = filled_study.keys[("spatial_drop", "vit_b16")]
    linearity = spatial_report.spatial_linearity(data)
    assert len(linearity) == 2 * DEPTH
    rows = results.results(filled_study.engine, task_keys=[key], name="linearity_r2")
    for cell in linearity.itertuples():
        match = rows[(rows["layer"] == cell.layer) & (rows["variant"] == cell.variant)]
        assert len(match) == 1 and cell.value == match["value"].iloc[0]
        assert cell.row == f"layer {cell.layer}"
    last = linearity[linearity["layer"] == DEPTH - 1]["value"]
    others = linearity[linearity["layer"] < DEPTH - 1]["value"]
    assert last.max() < 0.9 < others.min()
    curves = spatial_report.spatial_curves(data)
    assert set(curves["variant"]) == {"layer_mean"}
    assert len(curves) == 2 * DEPTH * 11


def test_missing_correctness_leaves_intervals_empty(tmp_path):
    filled = fill_study(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", kinds=["fgbg"])
    data = StudyData.load(filled.study, filled.task_keys, filled.engine, filled.store_root,
                          filled.model_names)
    for path in data.artifacts["file"]:
        (tmp_path / "store" / path).unlink(missing_ok=True)
    rows = fgbg_intervals(data)
    assert rows["ci_low"].isna().all() and len(rows) == 4 * 8
    cells = fgbg_report.table2(data, rows)
    assert len(cells) == 12 and cells["value"].notna().all()


def test_labels_tell_sweeps_apart():
    frame = pd.DataFrame({
        "key": ["a", "b", "c"], "kind": ["fgbg", "fgbg", "fgbg"], "model": ["m", "m", "n"],
        "params": [json.dumps({"fill": "black", "x": 1}), json.dumps({"fill": "mean", "x": 1}),
                   json.dumps({"fill": "black"})],
        "dataset": ["val"] * 3, "seed": [0, 0, 0],
    })
    assert task_labels(frame) == {"a": "m [fill=black]", "b": "m [fill=mean]", "c": "n"}


def test_markdown_cells():
    cell = pd.Series({"value": 78.123, "ci_low": 76.04, "ci_high": 80.0, "paper": 78.61,
                      "paper_match": "exact"})
    assert tables.format_cell(cell) == "78.12 [76.0, 80.0] (paper 78.61)"
    assert tables.format_cell(cell.copy().replace("exact", "architecture")).endswith("78.61†)")
    bare = pd.Series({"value": 0.5, "ci_low": np.nan, "ci_high": np.nan, "paper": np.nan,
                      "paper_match": None})
    assert tables.format_cell(bare, 3) == "0.500"


def test_markdown_table_shape(data):
    table = tables.Table("t2", "Table 2", fgbg_report.table2(data, fgbg_intervals(data)))
    lines = tables.to_markdown(table).strip().splitlines()
    assert lines[0] == "### Table 2"
    assert lines[2].count("|") == 5 and lines[3].startswith("| --- ")
    assert len(lines) == 4 + 4  # title, blank, header, rule, one line per model
    assert lines[4].startswith("| ViTs · vit_b16 | ")


def test_interval_decimals_follow_the_table() -> None:
    """Percent tables keep one decimal in their intervals; a table of shares asks for more."""
    cell = pd.Series({"value": 0.375, "ci_low": 0.3512, "ci_high": 0.4049, "paper": float("nan"),
                      "paper_match": None})
    assert tables.format_cell(cell, 2) == "0.38 [0.4, 0.4]"
    assert tables.format_cell(cell, 2, 2) == "0.38 [0.35, 0.40]"
