"""Drawing: heat-map cells carry their value's colour, overlays blend as stated, panels place
each tile where Figure 2 puts it."""

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from runner.render import (
    GAP,
    MISSING,
    colorize,
    feature_panel,
    heatmap_image,
    normalize,
    overlay,
    to_pil,
)


def test_normalize_min_max_and_constant():
    assert np.allclose(normalize(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert np.allclose(normalize(np.array([2.0, 4.0]), vmin=0.0, vmax=8.0), [0.25, 0.5])
    assert np.allclose(normalize(np.full((2, 2), 7.0)), 0.0)


def test_colorize_matches_matplotlib_and_greys_nan():
    values = np.array([[0.0, 0.5], [1.0, np.nan]])
    rgb = colorize(values, cmap="viridis")
    expected = colormaps["viridis"](np.array([0.0, 0.5, 1.0]), bytes=True)[:, :3]
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == expected[0]).all() and (rgb[0, 1] == expected[1]).all()
    assert (rgb[1, 0] == expected[2]).all()
    assert tuple(rgb[1, 1]) == MISSING


def test_heatmap_cells_carry_their_values_colour():
    values = np.arange(6, dtype=float).reshape(2, 3)
    image = np.asarray(heatmap_image(values, cell_px=10))
    expected = colorize(values)
    for r in range(2):
        for c in range(3):
            assert (image[r * 10 + 5, c * 10 + 5] == expected[r, c]).all()
    # colour bar: maximum colour at the top, minimum at the bottom
    bar_x = 3 * 10 + 2 * GAP + 1
    assert (image[0, bar_x] == expected[1, 2]).all()
    assert (image[19, bar_x] == expected[0, 0]).all()


def test_heatmap_title_adds_a_strip_above():
    values = np.random.default_rng(0).random((4, 4))
    plain, titled = heatmap_image(values), heatmap_image(values, "Figure 6")
    assert titled.height > plain.height
    assert np.array_equal(np.asarray(titled)[-plain.height:, : plain.width], np.asarray(plain))


def test_to_pil_reads_torch_chw_and_numpy_hwc_alike():
    rng = np.random.default_rng(1)
    hwc = rng.random((5, 7, 3)).astype(np.float32)
    a = np.asarray(to_pil(hwc))
    b = np.asarray(to_pil(torch.from_numpy(hwc).permute(2, 0, 1)))
    assert a.shape == (5, 7, 3) and np.array_equal(a, b)
    assert np.array_equal(a, np.round(hwc * 255).astype(np.uint8))
    assert (np.asarray(to_pil(torch.full((3, 2, 2), 255, dtype=torch.uint8))) == 255).all()


def test_overlay_blends_with_alpha():
    image = np.full((16, 16, 3), 0.2, dtype=np.float32)
    amap = np.zeros((4, 4))
    amap[0, 0] = 1.0
    assert np.array_equal(np.asarray(overlay(image, amap, alpha=0.0)), np.asarray(to_pil(image)))
    blended = np.asarray(overlay(image, amap, alpha=0.25, cmap="gray")).astype(float)
    # bottom-right corner: map value 0 -> black under "gray"; pixel = 0.75 * 51
    assert np.allclose(blended[15, 15], round(0.75 * 51), atol=1)
    # top-left corner is the map's maximum -> white blended in
    assert blended[0, 0, 0] > blended[15, 15, 0] + 40


def test_feature_panel_layout():
    side = 8
    opt = np.zeros((side, side, 3), dtype=np.uint8)
    tops = [np.full((side, side, 3), 40 * (i + 1), dtype=np.uint8) for i in range(3)]
    maps = [np.eye(2) * (i + 1) for i in range(3)]
    panel = np.asarray(feature_panel(opt, tops, maps))
    big = 2 * side + GAP
    assert panel.shape == (big, big + 3 * (GAP + side), 3)
    assert (panel[: big, : big] == 0).all()  # optimized image, scaled to two tiles high
    for i in range(3):
        x = big + GAP + i * (side + GAP)
        assert (panel[0:side, x : x + side] == 40 * (i + 1)).all()
        below = panel[side + GAP : 2 * side + GAP, x : x + side]
        assert not np.array_equal(below[0, 0], below[0, -1])  # the map's diagonal is visible
    with pytest.raises(ValueError, match="3 top images but 2"):
        feature_panel(opt, tops, maps[:2])


@pytest.mark.parametrize("cmap", ["viridis", "magma", "RdBu_r"])
def test_colorize_picks_matplotlibs_colours(cmap: str) -> None:
    """The cached colour table gives exactly what the colour map itself draws, NaNs grey."""
    from runner.render import MISSING, colorize, normalize

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (14, 14)]:
        values = rng.normal(size=shape)
        values[rng.random(shape) < 0.2] = np.nan
        for case in (values, np.full(shape, 3.0), np.linspace(0, 1, values.size).reshape(shape)):
            expected = colormaps[cmap](normalize(case), bytes=True)[..., :3]
            expected[~np.isfinite(case)] = MISSING
            assert np.array_equal(colorize(case, cmap=cmap), expected)
