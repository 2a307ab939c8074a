"""Image drawing shared by the study kinds and the report: heat maps, activation-map overlays and
the paper's Figure 2 feature panels. Pure PIL + numpy (matplotlib only for its colour maps)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Pixels between the tiles of a panel, and the panel background (white).
GAP = 4
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
#: Colour of cells whose value is NaN (no data).
MISSING = (128, 128, 128)


def to_pil(image: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, a torch tensor (3, H, W) or a numpy array (H, W, 3).

    Floats are read as [0, 1] (clipped), integers as 0..255. Grey inputs become RGB.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if type(image).__module__.startswith("torch"):
        image = image.detach().float().cpu().numpy() if image.is_floating_point() else (
            image.detach().cpu().numpy())
        image = np.moveaxis(image, 0, -1) if image.ndim == 3 else image
    array = np.asarray(image)
    if np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0)
    array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return Image.fromarray(array, "RGB")


def value_range(values: np.ndarray, vmin: float | None = None, vmax: float | None = None
                ) -> tuple[float, float]:
    """(low, high) for drawing: the given bounds, else the finite min and max (0, 1 if none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    return lo, hi


def normalize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None
              ) -> np.ndarray:
    """Values scaled to [0, 1] between vmin and vmax (default: their finite min and max);
    a constant array maps to 0."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = value_range(values, vmin, vmax)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return np.clip(scaled, 0.0, 1.0)


@functools.cache
def colormap_table(cmap: str) -> np.ndarray:
    """A matplotlib colour map's entries as uint8 RGB, (N, 3): read once per process (each
    ``colormaps[name]`` is a fresh copy that builds its table again, 0.4 ms a call)."""
    from matplotlib import colormaps

    table = colormaps[cmap]
    return table(np.arange(table.N), bytes=True)[:, :3]


def colorize(values: np.ndarray, *, cmap: str = "viridis", vmin: float | None = None,
             vmax: float | None = None) -> np.ndarray:
    """A 2-D array drawn with a matplotlib colour map: uint8 (H, W, 3); NaN cells are grey.
    The entry of a value in [0, 1] is the one matplotlib picks (``int(x * N)``, 1 -> N - 1)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {values.shape}")
    table = colormap_table(cmap)
    scaled = np.nan_to_num(normalize(values, vmin, vmax), nan=0.0)
    rgb = table[np.minimum((scaled * len(table)).astype(np.intp), len(table) - 1)]
    rgb[~np.isfinite(values)] = MISSING
    return rgb


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _with_title(image: Image.Image, title: str | None, size: int = 14) -> Image.Image:
    """The image with a strip of text above it (unchanged when there is no title)."""
    if not title:
        return image
    font = _font(size)
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), title, font=font)
    strip = bottom + 2 * GAP
    out = Image.new("RGB", (max(image.width, right + 2 * GAP), image.height + strip), BACKGROUND)
    ImageDraw.Draw(out).text((GAP, GAP), title, fill=TEXT, font=font)
    out.paste(image, (0, strip))
    return out


def heatmap_image(values: np.ndarray, title: str | None = None, *, cmap: str = "viridis",
                  vmin: float | None = None, vmax: float | None = None,
                  cell_px: int | None = None) -> Image.Image:
    """A 2-D array as a heat map: one square cell per entry, a colour bar with the value range
    on the right, and an optional title above (Figure 6's per-position accuracy, for instance)."""
    values = np.asarray(values, dtype=np.float64)
    rows, cols = values.shape
    cell = cell_px or max(1, 320 // max(rows, cols))
    grid = Image.fromarray(colorize(values, cmap=cmap, vmin=vmin, vmax=vmax)).resize(
        (cols * cell, rows * cell), Image.NEAREST)
    lo, hi = value_range(values, vmin, vmax)
    bar_w, height = max(8, cell // 2), grid.height
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(bar_w, axis=1)  # top = max
    bar = Image.fromarray(colorize(ramp, cmap=cmap, vmin=0.0, vmax=1.0))
    font = _font(12)
    labels = [f"{hi:.3g}", f"{lo:.3g}"]
    label_w = max(ImageDraw.Draw(bar).textbbox((0, 0), s, font=font)[2] for s in labels)
    out = Image.new("RGB", (grid.width + 2 * GAP + bar_w + GAP + label_w + GAP, height),
                    BACKGROUND)
    out.paste(grid, (0, 0))
    bar_x = grid.width + 2 * GAP
    out.paste(bar, (bar_x, 0))
    draw = ImageDraw.Draw(out)
    draw.text((bar_x + bar_w + GAP, 0), labels[0], fill=TEXT, font=font)
    text_h = draw.textbbox((0, 0), labels[1], font=font)[3]
    draw.text((bar_x + bar_w + GAP, height - text_h - 1), labels[1], fill=TEXT, font=font)
    return _with_title(out, title)


def upsample_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A patch-grid map stretched to (width, height) pixels, bilinear, values kept as floats."""
    amap = np.asarray(amap, dtype=np.float32)
    return np.asarray(Image.fromarray(amap).resize(size, Image.BILINEAR))


def map_image(amap: np.ndarray, size: tuple[int, int], *, cmap: str = "jet") -> Image.Image:
    """An activation map alone, min-max normalized, coloured and stretched to ``size``."""
    return Image.fromarray(colorize(amap, cmap=cmap)).resize(size, Image.NEAREST)


def overlay(image: Any, amap: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet"
            ) -> Image.Image:
    """An activation map (patch grid) drawn over its image: min-max normalized, bilinearly
    upsampled to the image size, coloured, and alpha-blended (``alpha`` = weight of the map)."""
    base = to_pil(image)
    stretched = upsample_map(normalize(amap), base.size)
    heat = colorize(stretched, cmap=cmap, vmin=0.0, vmax=1.0).astype(np.float64)
    blended = (1.0 - alpha) * np.asarray(base, dtype=np.float64) + alpha * heat
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def feature_panel(opt_image: Any, top_images: Sequence[Any], maps: Sequence[np.ndarray],
                  *, title: str | None = None, tile: int | None = None) -> Image.Image:
    """The paper's Figure 2 panel: the optimized image on the left (two tiles high), the most
    activating images in the top row and each one's activation map right below it."""
    if len(top_images) != len(maps):
        raise ValueError(f"{len(top_images)} top images but {len(maps)} activation maps")
    first = to_pil(opt_image)
    side = tile or first.height
    big = 2 * side + GAP
    width = big + sum(GAP + side for _ in top_images)
    panel = Image.new("RGB", (width, big), BACKGROUND)
    panel.paste(first.resize((big, big), Image.BILINEAR), (0, 0))
    for i, (image, amap) in enumerate(zip(top_images, maps, strict=True)):
        x = big + GAP + i * (side + GAP)
        panel.paste(to_pil(image).resize((side, side), Image.BILINEAR), (x, 0))
        panel.paste(map_image(amap, (side, side)), (x, side + GAP))
    return _with_title(panel, title)
