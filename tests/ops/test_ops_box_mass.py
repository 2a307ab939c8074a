"""runner.ops.box_mass against a plain numpy reference: the map upsampled (nearest) to a dense
grid of sample points of the model input, each point mapped back to the original image's
pixels and tested against the inclusive boxes there."""

import math

import numpy as np
import pytest
import torch

from runner.ops.box_mass import (
    area_share,
    cell_coverage,
    input_frame_boxes,
    peak_coverage,
    pixel_coverage,
    positive_share,
)
from runner.ops.pixels import resize_and_crop

torch.set_num_threads(1)

SUB = 96  # sample points per input pixel and axis: exact for the scales below (2/3, 21/32)


def reference_inside(boxes, height, width, size, crop_pct, sub=SUB) -> np.ndarray:
    """(size*sub, size*sub) bool: whether each sample point of the crop falls in a box, found
    by mapping the point back into the original image (the crop's inverse, done by hand)."""
    shorter = math.floor(size / crop_pct)
    if height <= width:
        rh, rw = shorter, int(shorter * width / height)
    else:
        rh, rw = int(shorter * height / width), shorter
    top, left = round((rh - size) / 2), round((rw - size) / 2)
    points = (np.arange(size * sub) + 0.5) / sub
    u = (points + left) * width / rw  # column in the original image, continuous
    v = (points + top) * height / rh
    inside = np.zeros((size * sub, size * sub), dtype=bool)
    for xmin, ymin, xmax, ymax in boxes:
        cols = (u >= xmin) & (u < xmax + 1)
        rows = (v >= ymin) & (v < ymax + 1)
        inside |= rows[:, None] & cols[None, :]
    return inside


def reference_measures(amap: np.ndarray, inside: np.ndarray) -> tuple[float, float, float]:
    """Box share, pointing (share of the peak cells' points inside) and area share, on the
    map upsampled by repetition to the sample grid."""
    rep = inside.shape[0] // amap.shape[0], inside.shape[1] // amap.shape[1]
    dense = np.kron(amap, np.ones(rep))
    positive = np.clip(dense, 0, None)
    with np.errstate(invalid="ignore"):  # no positive mass: NaN, as the op gives
        share = positive[inside].sum() / positive.sum()
    peak = np.kron(amap == amap.max(), np.ones(rep)).astype(bool)
    return float(share), float(inside[peak].mean()), float(inside.mean())


CASES = [  # (height, width, size, crop_pct, boxes)
    (48, 64, 32, 1.0, [(10, 4, 40, 30)]),                  # landscape, scaled by 2/3
    (64, 48, 32, 1.0, [(0, 0, 20, 20), (15, 12, 47, 63)]),  # portrait, overlapping boxes
    (40, 40, 32, 0.8, [(2, 3, 17, 38)]),                   # resize 1:1, crop 4 px each side
    (32, 32, 32, 1.0, [(8, 8, 15, 23)]),                   # identity frame, patch-aligned
    (48, 64, 32, 1.0, [(0, 0, 3, 47)]),                    # box wholly cut by the crop
]


@pytest.mark.parametrize("height, width, size, crop_pct, boxes", CASES)
def test_measures_match_the_numpy_reference(height, width, size, crop_pct, boxes):
    grid = (4, 4)
    frame = input_frame_boxes(torch.tensor(boxes), height, width, size, crop_pct)
    cover = cell_coverage(frame, size, grid)
    inside = reference_inside(boxes, height, width, size, crop_pct)
    cells = inside.reshape(grid[0], inside.shape[0] // grid[0], grid[1], -1).mean(axis=(1, 3))
    np.testing.assert_allclose(cover.numpy(), cells, atol=1e-9)
    rng = np.random.default_rng(height + width)
    maps = rng.normal(size=(6, *grid))
    maps[0] = np.where(cells > 0, 2.0, -1.0)  # ties at the peak
    shares = positive_share(torch.from_numpy(maps), cover)
    hits = peak_coverage(torch.from_numpy(maps), cover)
    chance = area_share(cover)
    for i, amap in enumerate(maps):
        share, hit, area = reference_measures(amap, inside)
        if np.isnan(share):
            assert math.isnan(shares[i]) and cells.sum() == 0
        else:
            assert shares[i].item() == pytest.approx(share, abs=1e-9)
        assert hits[i].item() == pytest.approx(hit, abs=1e-9)
        assert chance.item() == pytest.approx(area, abs=1e-9)


def test_frame_follows_the_models_resize_and_crop():
    """A box mask resized and cropped like an image lands where the coverage says."""
    height, width, size, crop_pct = 90, 120, 32, 0.875
    boxes = [(20, 10, 70, 60), (80, 40, 110, 85)]
    mask = torch.zeros(3, height, width)
    for xmin, ymin, xmax, ymax in boxes:
        mask[:, ymin : ymax + 1, xmin : xmax + 1] = 1.0
    seen = resize_and_crop(mask, size, crop_pct, "bilinear")[0].double()
    cover = pixel_coverage(input_frame_boxes(torch.tensor(boxes), height, width, size,
                                             crop_pct), size)
    assert (seen - cover).abs().mean() < 0.03
    assert seen.sum().item() == pytest.approx(cover.sum().item(), rel=0.02)


def test_uniform_and_random_maps_score_chance():
    boxes = torch.tensor([(5, 5, 20, 12)])
    cover = cell_coverage(input_frame_boxes(boxes, 32, 32, 32, 1.0), 32, (4, 4))
    assert positive_share(torch.ones(4, 4), cover).item() == pytest.approx(
        area_share(cover).item())
    # every single-cell peak in turn: the mean pointing score is the area share
    peaks = torch.eye(16).reshape(16, 4, 4)
    assert peak_coverage(peaks, cover).mean().item() == pytest.approx(area_share(cover).item())


def test_extremes_and_undefined_maps():
    cover = torch.zeros(4, 4, dtype=torch.float64)
    cover[1:3, 1:3] = 1.0
    inside_only = cover * 3.0 - 0.1  # positive inside, slightly negative outside
    outside_only = (1 - cover) * 2.0
    assert positive_share(inside_only, cover).item() == 1.0
    assert positive_share(outside_only, cover).item() == 0.0
    assert peak_coverage(inside_only, cover).item() == 1.0
    assert peak_coverage(outside_only, cover).item() == 0.0
    assert math.isnan(positive_share(-torch.ones(4, 4), cover).item())
    assert area_share(cover).item() == 0.25
    assert pixel_coverage(torch.zeros(0, 4), 8).sum().item() == 0.0
