"""The decode -> model-input pipeline against PIL (what timm's eval transform runs) and by hand."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from runner.ops.pixels import (
    INTERPOLATIONS,
    CropGeometry,
    center_crop,
    column_pass,
    crop_geometry,
    model_batch,
    resize_and_crop,
    resize_shorter,
    resized_size,
    row_pass,
    separable_resize,
    to_unit,
)


def test_to_unit_scales_uint8_to_unit_floats():
    image = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1)
    out = to_unit(image)
    assert out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    with pytest.raises(TypeError):
        to_unit(out)


def test_resized_size_follows_torchvision_resize_int():
    assert resized_size(100, 200, 50) == (50, 100)
    assert resized_size(200, 100, 50) == (100, 50)
    assert resized_size(3, 7, 5) == (5, 11)  # int(5 * 7 / 3) = int(11.67): truncated
    assert resized_size(64, 64, 71) == (71, 71)


def test_center_crop_offsets_round_like_torchvision():
    image = torch.arange(5 * 8, dtype=torch.float32).view(1, 5, 8)
    out = center_crop(image, 3)
    # top = round((5 - 3) / 2) = 1, left = round((8 - 3) / 2) = round(2.5) = 2 (half to even)
    assert torch.equal(out, image[:, 1:4, 2:5])
    with pytest.raises(ValueError):
        center_crop(image, 6)


def test_resize_keeps_an_image_of_the_right_size_unchanged():
    image = torch.rand(3, 16, 20)
    assert resize_shorter(image, 16, "bicubic") is image
    out = resize_and_crop(image, 16, 1.0, "bicubic")
    assert torch.equal(out, image[:, :, 2:18])


def test_nearest_downscale_by_two_picks_every_other_pixel():
    image = torch.arange(3 * 4 * 6, dtype=torch.float32).view(3, 4, 6)
    out = resize_shorter(image, 2, "nearest")
    assert torch.equal(out, image[:, ::2, ::2])


def test_constant_image_stays_constant_with_bicubic():
    image = torch.full((3, 37, 53), 0.25)
    out = resize_and_crop(image, 24, 0.875, "bicubic")
    assert out.shape == (3, 24, 24)
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-6)


@pytest.mark.parametrize("interpolation,pil", [("bilinear", Image.BILINEAR),
                                               ("bicubic", Image.BICUBIC)])
def test_matches_pil_resize_and_center_crop(interpolation, pil):
    rng = np.random.default_rng(0)
    # a smooth image (PIL rounds to uint8 in between; noise would amplify that rounding)
    yy, xx = np.mgrid[0:45, 0:70]
    array = np.stack([128 + 100 * np.sin(xx / 7.0), 128 + 90 * np.cos(yy / 5.0),
                      rng.integers(60, 200) + 0 * xx]).astype(np.uint8)
    size, crop_pct = 32, 0.875
    shorter = math.floor(size / crop_pct)  # 36
    height, width = resized_size(45, 70, shorter)
    resized = Image.fromarray(array.transpose(1, 2, 0)).resize((width, height), pil)
    top, left = round((height - size) / 2), round((width - size) / 2)
    expected = np.asarray(resized)[top : top + size, left : left + size].transpose(2, 0, 1) / 255
    ours = resize_and_crop(to_unit(torch.from_numpy(array)), size, crop_pct, interpolation)
    assert ours.shape == (3, size, size)
    assert np.abs(ours.numpy() - expected).max() <= 0.6 / 255  # PIL rounds to uint8


def test_model_batch_stacks_images_of_different_sizes():
    images = [torch.rand(3, 40, 30), torch.rand(3, 20, 50)]
    batch = model_batch(images, 16, 0.9, "bilinear")
    assert batch.shape == (2, 3, 16, 16)
    assert torch.equal(batch[1], resize_and_crop(images[1], 16, 0.9, "bilinear"))
    with pytest.raises(ValueError):
        model_batch([], 16, 0.9, "bilinear")


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_model_batch_grouped_by_size_equals_one_by_one(interpolation):
    """The GPU path (images of one size resized in one call) gives exactly the per-image values,
    in the input order, for a mix of sizes."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(75, 100), (100, 75), (75, 100), (60, 100), (75, 100), (100, 75)]
    images = [torch.rand(3, *s, generator=gen) for s in shapes]
    grouped = model_batch(images, 32, 0.875, interpolation, group=True)
    alone = torch.stack([resize_and_crop(im, 32, 0.875, interpolation) for im in images])
    assert grouped.shape == (6, 3, 32, 32)
    assert torch.equal(grouped, alone)
    assert torch.equal(model_batch(images, 32, 0.875, interpolation, group=False), alone)


def random_cases(count: int, seed: int = 0):
    """(image, size, crop_pct, interpolation): landscape, portrait, square, down- and upscaled."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.choice([16, 24, 32, 56]))
        height, width = (int(n) for n in rng.integers(12, 130, size=2))
        yield (torch.rand(3, height, width, generator=gen), size,
               float(rng.choice([0.875, 0.9, 1.0])), str(rng.choice(INTERPOLATIONS)))


def test_row_then_column_pass_equals_one_resize_bit_for_bit_on_the_cpu():
    """The CPU kernel is separable: the two passes give resize_and_crop's values exactly (the
    fused pass relies on it to resample only the edited rows of a masked image)."""
    assert separable_resize(torch.device("cpu"))
    for image, size, crop_pct, interpolation in random_cases(60):
        geometry = crop_geometry(*image.shape[-2:], size, crop_pct)
        two = column_pass(row_pass(image, geometry, interpolation), geometry, interpolation)
        assert torch.equal(two, resize_and_crop(image, size, crop_pct, interpolation))
        band = slice(image.shape[-2] // 3, image.shape[-2] // 2)  # rows are independent
        rows = row_pass(image, geometry, interpolation)
        assert torch.equal(row_pass(image[:, band], geometry, interpolation), rows[:, band])


def test_crop_geometry_is_resize_and_crops():
    geometry = crop_geometry(375, 500, 224, 0.875)
    assert geometry == CropGeometry(resized=(256, 341), top=16, left=58, size=224)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_geometry(375, 500, 224, 1.2)
