"""Feature panels by layer: one image per model, a row per layer (shallow at the top), a
column per feature, each cell the stored Figure 2 panel, so Figure 1's edges -> textures ->
objects progression reads top to bottom."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_LABEL_WIDTH = 84
_HEADER = 20
_GAP = 10
_BACKGROUND = (255, 255, 255)
_INK = (40, 40, 40)


@dataclass(frozen=True)
class PanelCell:
    """One stored panel (or optimized image) of a visualized feature."""

    layer: int
    feature: int
    path: Path
    activation: float | None = None


def layer_grid(
    cells: list[PanelCell],
    *,
    height: int = 120,
    max_width: int = 1600,
    max_features: int = 8,
) -> Image.Image:
    """Compose panels into rows by layer and columns by feature (at most ``max_features`` per
    layer), scaled to a common height that keeps the widest row under ``max_width`` pixels."""
    rows: dict[int, list[PanelCell]] = {}
    for cell in sorted(cells, key=lambda c: (c.layer, c.feature)):
        rows.setdefault(cell.layer, [])
        if len(rows[cell.layer]) < max_features:
            rows[cell.layer].append(cell)
    images = {c: _open_rgb(c.path) for row in rows.values() for c in row}
    aspect = {c: im.width / im.height for c, im in images.items()}
    widest = max(sum(aspect[c] for c in row) + _GAP * len(row) / height for row in rows.values())
    height = max(40, min(height, int((max_width - _LABEL_WIDTH) / widest)))
    widths = {c: max(1, round(aspect[c] * height)) for c in images}
    canvas_width = _LABEL_WIDTH + max(sum(widths[c] + _GAP for c in row) for row in rows.values())
    canvas = Image.new("RGB", (canvas_width, len(rows) * (height + _HEADER + _GAP) + _GAP),
                       _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(15)
    small = _font(13)
    top = _GAP
    for layer, row in rows.items():
        draw.text((8, top + _HEADER + height // 2 - 8), f"layer {layer}", fill=_INK, font=font)
        left = _LABEL_WIDTH
        for cell in row:
            image = images[cell]
            size = (widths[cell], height)
            resample = Image.NEAREST if image.height < height else Image.LANCZOS
            canvas.paste(image.resize(size, resample), (left, top + _HEADER))
            caption = f"feature {cell.feature}"
            if cell.activation is not None:
                caption += f"  act {cell.activation:.2f}"
            draw.text((left, top + 2), caption, fill=_INK, font=small)
            left += widths[cell] + _GAP
        top += height + _HEADER + _GAP
    return canvas


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()
