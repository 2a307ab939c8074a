"""The perturbations of visualize's kept_* metrics against plain numpy and Pillow: the blur
against a numpy convolution, the shift against np.roll, the JPEG round trip against Pillow's
own encoder and decoder (tables, chroma subsampling, the reconstructed pixels)."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from runner.ops.perturb import circular_shift, gaussian_blur, gaussian_kernel, jpeg, quant_table


def _numpy_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(C, H, W) blurred with an explicit truncated Gaussian, rows then columns."""
    radius = int(4 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    h, w = image.shape[1:]
    rows = sum(t * padded[:, :, i : i + w] for i, t in enumerate(taps))
    return sum(t * rows[:, i : i + h, :] for i, t in enumerate(taps))


def _pillow_jpeg(image: torch.Tensor, quality: int = 75) -> torch.Tensor:
    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)


def _smooth_image(h: int = 40, w: int = 48) -> torch.Tensor:
    """A natural-looking image: gradients, a disc, mild noise."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((y - 0.5) ** 2 + (x - 0.4) ** 2) < 0.08).float()
    g = torch.Generator().manual_seed(1)
    image = torch.stack([x, y, 0.3 + 0.5 * disc]) + 0.03 * torch.randn((3, h, w), generator=g)
    return image.clamp(0, 1)


def test_gaussian_kernel_is_the_truncated_normalized_gaussian():
    kernel = gaussian_kernel(1.0)
    assert kernel.numel() == 9  # radius round(4 sigma) = 4
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert kernel[5].item() / kernel[4].item() == pytest.approx(math.exp(-0.5), rel=1e-5)


def test_blur_matches_a_numpy_convolution():
    g = torch.Generator().manual_seed(0)
    images = torch.rand((2, 3, 17, 23), generator=g)
    out = gaussian_blur(images, sigma=1.0)
    for image, blurred in zip(images, out, strict=True):
        expected = _numpy_blur(image.double().numpy(), 1.0)
        np.testing.assert_allclose(blurred.numpy(), expected, atol=1e-5)
    assert torch.allclose(gaussian_blur(torch.full((1, 3, 9, 9), 0.3)), torch.tensor(0.3))


def test_blur_erases_a_one_pixel_checkerboard_and_keeps_a_flat_colour():
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float()
    images = torch.stack([checker.expand(3, 32, 32), torch.full((3, 32, 32), 0.8)])
    out = gaussian_blur(images)
    interior = out[0, :, 4:-4, 4:-4]
    assert (interior - 0.5).abs().max().item() < 0.01  # Nyquist gain exp(-pi^2 / 2) ~ 0.007
    assert torch.allclose(out[1], images[1])


def test_circular_shift_is_np_roll():
    images = torch.rand((2, 3, 8, 12))
    out = circular_shift(images, 3, -5)
    np.testing.assert_array_equal(out.numpy(), np.roll(images.numpy(), (3, -5), axis=(2, 3)))
    assert torch.equal(circular_shift(images, 8, 12), images)  # a full period: no change


def test_quantization_tables_are_pillows():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG", quality=75)
    buffer.seek(0)
    saved = Image.open(buffer)
    assert JpegImagePlugin.get_sampling(saved) == 2  # Pillow's default: 4:2:0
    assert quant_table(75).flatten().tolist() == list(saved.quantization[0])
    assert quant_table(75, chroma=True).flatten().tolist() == list(saved.quantization[1])
    assert quant_table(100).max().item() == 1 and quant_table(10)[0, 0].item() == 80
    with pytest.raises(ValueError, match="quality"):
        quant_table(0)


def test_jpeg_matches_pillows_round_trip():
    smooth = _smooth_image()
    ours, pillow = jpeg(smooth[None])[0], _pillow_jpeg(smooth)
    assert (ours - pillow).abs().mean().item() * 255 < 1.0  # levels
    assert (ours - pillow).abs().max().item() * 255 <= 8
    assert (smooth - pillow).abs().mean().item() * 255 > 1.0  # and JPEG did change it
    noise = torch.rand((3, 32, 32), generator=torch.Generator().manual_seed(2))
    ours, pillow = jpeg(noise[None])[0], _pillow_jpeg(noise)
    change = (noise - pillow).abs().mean().item()
    assert (ours - pillow).abs().mean().item() < 0.1 * change  # the same loss, to within 10%


def test_jpeg_removes_a_chroma_checkerboard_keeps_sizes_and_batches():
    checker = ((torch.arange(24)[:, None] + torch.arange(40)[None, :]) % 2).float()
    red_green = torch.stack([checker, 1 - checker, torch.zeros_like(checker)])
    out = jpeg(torch.stack([red_green, _smooth_image(24, 40)]))
    assert out.shape == (2, 3, 24, 40) and out.dtype == torch.float32
    r_minus_g = out[0, 0] - out[0, 1]
    contrast = (r_minus_g * (2 * checker - 1)).mean().item()  # +2 before
    assert abs(contrast) < 0.3  # 4:2:0 averages the colour checkerboard away
    assert torch.allclose(out[1], jpeg(_smooth_image(24, 40)[None])[0])
