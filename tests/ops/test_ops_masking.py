"""Box masks on hand-made images: inclusive edges, clipping, fg/bg complementarity."""

from functools import partial

import numpy as np
import pytest
import torch

from runner.data.boxes import parse_voc_boxes
from runner.ops.masking import REGIONS, box_mask, mask_region, masked_band
from runner.ops.pixels import column_pass, crop_geometry, resize_and_crop, row_pass
from tests.ops.test_ops_pixels import random_cases


def test_box_mask_includes_both_edges():
    mask = box_mask(5, 6, [(1, 2, 3, 3)])
    expected = np.zeros((5, 6), dtype=bool)
    expected[2:4, 1:4] = True  # rows ymin..ymax, columns xmin..xmax, both inclusive
    assert np.array_equal(mask.numpy(), expected)
    assert mask[2, 1] and mask[3, 3]  # the corners named in the box are inside
    assert not mask[1, 1] and not mask[2, 4] and not mask[4, 3] and not mask[2, 0]


def test_box_mask_union_clipping_and_empty_boxes():
    mask = box_mask(4, 4, [(0, 0, 1, 1), (1, 1, 9, 2), (3, 3, 2, 3)])  # last one is empty
    expected = np.array([[1, 1, 0, 0],
                         [1, 1, 1, 1],
                         [0, 1, 1, 1],
                         [0, 0, 0, 0]], dtype=bool)
    assert np.array_equal(mask.numpy(), expected)
    assert not box_mask(3, 3, []).any()


def test_edges_as_the_voc_file_says(tmp_path):
    # VOC counts pixels from 1: xmin=2..xmax=4, ymin=1..ymax=2 are columns 1..3, rows 0..1
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><size><width>6</width><height>4</height><depth>3</depth></size>"
        "<object><name>n01</name><bndbox><xmin>2</xmin><ymin>1</ymin><xmax>4</xmax>"
        "<ymax>2</ymax></bndbox></object>"
        "<object><name>n02</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>6</xmax>"
        "<ymax>4</ymax></bndbox></object></annotation>"
    )
    boxes = parse_voc_boxes(xml, "n01")  # only the image's own class
    image = torch.arange(1, 1 + 3 * 4 * 6, dtype=torch.float32).view(3, 4, 6)
    bg = mask_region(image, boxes, "bg", torch.zeros(3))
    expected_inside = np.zeros((4, 6), dtype=bool)
    expected_inside[0:2, 1:4] = True
    assert np.array_equal((bg == 0).all(dim=0).numpy(), expected_inside)


def test_fg_and_bg_are_complementary_and_use_the_fill():
    image = torch.rand(3, 7, 9)
    boxes = [(2, 1, 5, 4)]
    fill = torch.tensor([0.485, 0.456, 0.406])
    fg = mask_region(image, boxes, "fg", fill)
    bg = mask_region(image, boxes, "bg", fill)
    inside = box_mask(7, 9, boxes)
    assert torch.equal(fg[:, inside], image[:, inside])
    assert torch.equal(bg[:, ~inside], image[:, ~inside])
    assert torch.equal(fg[:, ~inside], fill[:, None].expand(3, int((~inside).sum())))
    assert torch.equal(bg[:, inside], fill[:, None].expand(3, int(inside.sum())))
    assert torch.equal(torch.where(inside, fg, bg), image)
    assert torch.equal(mask_region(image, [], "bg", fill), image)  # nothing to blank
    with pytest.raises(ValueError):
        mask_region(image, boxes, "both", fill)


def random_boxes(rng: np.random.Generator, height: int, width: int) -> list[tuple]:
    """0-3 boxes: overlapping, reaching past the edges, or empty (xmin > xmax)."""
    boxes = []
    for _ in range(int(rng.integers(0, 4))):
        x0, x1 = sorted(int(v) for v in rng.integers(-10, width + 10, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(-10, height + 10, size=2))
        boxes.append((x1, y0, x0, y1) if rng.random() < 0.1 else (x0, y0, x1, y1))
    return boxes


@pytest.mark.parametrize("region", REGIONS)
def test_band_edit_resized_equals_the_masked_image_resized(region):
    """Resampling only the rows that meet a box again gives, bit for bit, the resize of the
    whole masked image (the CPU's separable kernel), for any boxes and either fill."""
    rng = np.random.default_rng(1)
    for image, size, crop_pct, interpolation in random_cases(60, seed=2):
        boxes = random_boxes(rng, *image.shape[-2:])
        fill = torch.zeros(3) if rng.random() < 0.5 else torch.tensor([0.485, 0.456, 0.406])
        edit = masked_band(image, boxes, region, fill)
        masked = mask_region(image, boxes, region, fill)
        assert torch.equal(edit.apply(image), masked)
        geometry = crop_geometry(*image.shape[-2:], size, crop_pct)
        rows = edit.row_pass(row_pass(image, geometry, interpolation),
                             partial(row_pass, geometry=geometry, interpolation=interpolation))
        assert torch.equal(column_pass(rows, geometry, interpolation),
                           resize_and_crop(masked, size, crop_pct, interpolation))


def test_the_band_spans_the_rows_that_meet_a_box():
    image = torch.rand(3, 20, 10)
    edit = masked_band(image, [(1, 3, 4, 5), (2, 9, 3, 30), (5, -4, 2, 8)], "fg", torch.zeros(3))
    assert edit.rows == slice(3, 20)  # the empty box (xmin > xmax) counts for nothing
    assert masked_band(image, [], "bg", torch.zeros(3)).pixels.shape == (3, 0, 10)
