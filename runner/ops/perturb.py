"""Small changes of an image that a natural pattern survives and an adversarial one may not
(visualize's ``kept_*`` metrics): a Gaussian blur, a circular shift, and a JPEG round trip.

Every function takes and returns a batch ``(B, 3, H, W)`` of float images in [0, 1] on any
device. ``jpeg`` is baseline JPEG written in torch (4:2:0 chroma, the IJG quantization tables,
libjpeg's "fancy" upsampling), so a batch never leaves the device; it matches Pillow's encoder
and decoder to within a few grey levels (tests/ops/test_ops_perturb.py).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

#: JPEG's example quantization tables (ITU T.81, Annex K), which libjpeg and Pillow scale.
_LUMA_TABLE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_CHROMA_TABLE = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)
#: JFIF's full-range RGB -> YCbCr matrix (rows Y, Cb, Cr); Cb and Cr are offset by 128.
_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """The 1-D Gaussian of standard deviation ``sigma`` pixels, truncated at 4 sigma (as
    scipy's ``gaussian_filter``) and normalized to sum 1: ``2 * round(4 sigma) + 1`` taps."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Each channel convolved with a Gaussian of ``sigma`` pixels (separable), the border
    mirrored without repeating the edge pixel (numpy's ``reflect``)."""
    kernel = gaussian_kernel(sigma).to(images)
    radius, channels = kernel.numel() // 2, images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def circular_shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Every image shifted by ``dy`` rows and ``dx`` columns, wrapping around (``np.roll``):
    nothing is lost or invented, only the pattern's place against the patch grid changes."""
    return torch.roll(images, (dy, dx), dims=(-2, -1))


def quant_table(quality: int, chroma: bool = False) -> torch.Tensor:
    """libjpeg's quantization table at ``quality`` (1-100), (8, 8): the Annex K table scaled
    by ``5000 / q`` below 50 and ``200 - 2 q`` from 50, rounded, clamped to [1, 255]."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], not {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    base = torch.tensor(_CHROMA_TABLE if chroma else _LUMA_TABLE, dtype=torch.float64)
    return ((base * scale + 50) // 100).clamp(1, 255).view(8, 8).float()


@lru_cache(maxsize=4)
def _dct_matrix(device: str) -> torch.Tensor:
    """The orthonormal 8-point DCT-II matrix D (coefficients = D @ block @ D.T)."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float().to(device)


def _quantize_blocks(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """A (B, H, W) plane of levels (H, W multiples of 8) after the 8x8 DCT, quantization by
    ``table`` and the inverse DCT: what a decoder reconstructs, rounded to integer levels."""
    b, h, w = plane.shape
    d = _dct_matrix(str(plane.device))
    blocks = (plane - 128.0).view(b, h // 8, 8, w // 8, 8).transpose(2, 3)
    coefficients = d @ blocks @ d.T
    coefficients = torch.round(coefficients / table) * table
    blocks = d.T @ coefficients @ d
    return (blocks.transpose(2, 3).reshape(b, h, w) + 128.0).round().clamp(0, 255)


def jpeg(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """The images saved as baseline JPEG at ``quality`` and decoded again, as Pillow does by
    default: pixels rounded to 8 bits, YCbCr, chroma averaged over 2x2 (4:2:0), 8x8 DCT
    quantized with the IJG tables, chroma upsampled with libjpeg's triangle filter."""
    b, _, h, w = images.shape
    levels = (images.float().clamp(0, 1) * 255).round()
    pad_h, pad_w = -h % 16, -w % 16
    levels = F.pad(levels, (0, pad_w, 0, pad_h), mode="replicate")  # libjpeg repeats the edge
    to_ycc = torch.tensor(_TO_YCC, device=images.device)
    ycc = torch.einsum("dc,bchw->bdhw", to_ycc, levels)
    ycc[:, 1:] += 128.0
    ycc = ycc.round()  # libjpeg converts and downsamples in integers
    luma = _quantize_blocks(ycc[:, 0], quant_table(quality).to(images.device))
    chroma = F.avg_pool2d(ycc[:, 1:], 2).round()
    ch, cw = chroma.shape[-2:]
    chroma = _quantize_blocks(chroma.reshape(2 * b, ch, cw),
                              quant_table(quality, chroma=True).to(images.device))
    chroma = F.interpolate(chroma.view(b, 2, ch, cw), scale_factor=2, mode="bilinear",
                           align_corners=False) - 128.0
    ycc = torch.cat([luma[:, None], chroma], dim=1)
    rgb = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(to_ycc), ycc)
    return (rgb.round().clamp(0, 255) / 255.0)[..., :h, :w].to(images.dtype)
