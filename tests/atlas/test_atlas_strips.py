"""A feature's strips and the links between pages, on hand-made data (no database): each
cell's place in its strip, the strips' pixels, the stand-ins drawn without a dataset, the
variant labels, and the relative links every page uses."""

from __future__ import annotations

import io
import posixpath
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.atlas.images import Cell, cells, draw_strip, position, strip_digest
from runner.atlas.inputs import FeatureData, FeatureId, Optimized, TopImages
from runner.present import atlas_links as links


def optimized(tmp_path: Path, colour: tuple[int, int, int], **settings: object) -> Optimized:
    path = tmp_path / f"{colour}.png"
    Image.new("RGB", (64, 64), colour).save(path)
    return Optimized("k" * 64, path, "sha-" + str(colour), dict(settings),
                     {"activation": 1.5})


def ranking(k: int, *, maps: bool = True) -> TopImages:
    grid = np.stack([np.outer(np.arange(4.0), np.ones(4)) * (r + 1) for r in range(k)])
    return TopImages("topk on val", "t" * 64, "val", "npz", np.arange(k) - (k == 3),
                     np.linspace(3, 1, k), grid if maps else None)


def feature(tmp_path: Path) -> FeatureData:
    f = FeatureData(FeatureId("vit", "mlp", 3, 7))
    f.optimized = [optimized(tmp_path, (255, 0, 0), tv_weight=0.0, steps=400),
                   optimized(tmp_path, (0, 0, 255), tv_weight=0.01, steps=400)]
    f.top = [ranking(3), ranking(2, maps=False)]
    f.label_variants()
    return f


def test_each_cell_knows_its_place(tmp_path: Path) -> None:
    f = feature(tmp_path)
    layout = cells(f)
    assert [len(layout["opt"]), len(layout["top"])] == [2, 2 * 3 + 2 * 2]
    for part, strip in layout.items():
        for i, cell in enumerate(strip):
            assert cell.part == part and position(f, cell) == i


def test_the_strips_pixels(tmp_path: Path) -> None:
    f = feature(tmp_path)
    data, complete = draw_strip(f, "opt", None, 96)
    with Image.open(io.BytesIO(data)) as strip:
        assert strip.format == "WEBP" and strip.size == (2 * 64, 64)  # 64 px kept, not upscaled
        red, blue = np.asarray(strip.convert("RGB"), dtype=float)[32, [32, 96]]
    assert complete and red[0] > 200 > red[2] and blue[2] > 200 > blue[0]
    data, complete = draw_strip(f, "top", None, 48)  # no dataset: maps stand in
    with Image.open(io.BytesIO(data)) as strip:
        pixels = np.asarray(strip.convert("RGB"), dtype=float)
    assert strip.size == (10 * 48, 48) and not complete  # redrawn when a dataset opens

    def inside(i: int) -> np.ndarray:  # cell i without its edges (WebP blurs across them)
        return pixels[6:-6, i * 48 + 6 : (i + 1) * 48 - 6]

    assert inside(4).std() > 20  # rank 1's overlay: its map stands in
    assert np.abs(inside(1) - 200).max() < 12  # rank 1's image: no dataset, grey
    assert np.abs(inside(3) - 200).max() < 12  # rank 0: index -1, no image at all


def test_a_strip_digest_follows_its_inputs(tmp_path: Path) -> None:
    f = feature(tmp_path)
    opt, top = strip_digest(f, "opt", 96), strip_digest(f, "top", 96)
    f.top[0].indices = f.top[0].indices[::-1].copy()
    assert strip_digest(f, "opt", 96) == opt and strip_digest(f, "top", 96) != top
    f.optimized[0].sha256 = "other"
    assert strip_digest(f, "opt", 96) != opt and strip_digest(f, "opt", 64) != opt


def test_variants_are_named_by_what_differs(tmp_path: Path) -> None:
    f = feature(tmp_path)
    assert f.varied == ["tv_weight"]
    assert [o.variant for o in f.optimized] == ["tv_weight=0.0", "tv_weight=0.01"]
    alone = FeatureData(FeatureId("vit", "mlp", 0, 0), [optimized(tmp_path, (0, 255, 0))])
    alone.label_variants()
    assert alone.varied == [] and alone.optimized[0].variant == ""
    assert Cell("optimized", 0).part == "opt" and Cell("overlay", 1, 2).part == "top"


@pytest.mark.parametrize("start, to", [
    ("index.html", links.model_page("vit")),
    (links.feature_page("vit", "mlp", 3, 7), links.feature_image("vit", "mlp", 3, 7, "top")),
    (links.feature_page("vit", "mlp", 3, 7), links.feature_page("deit", "mlp", 3, 7)),
    (links.feature_page("vit", "mlp", 3, 7), "atlas.css"),
    (links.grid_page("vit", "q", 0, 2), links.model_page("vit")),
    (links.model_page("vit"), links.INDEX),
])
def test_relative_links_match_posixpath(start: str, to: str) -> None:
    assert links.relative(start, to) == posixpath.relpath(to, posixpath.dirname(start) or ".")
