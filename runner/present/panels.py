"""Image grids for the report: labelled rows of captioned images, scaled to one height.

``layer_grid`` lays out a visualize task's Figure 2 panels, a row per layer (shallow at the
top) and a column per feature, so Figure 1's edges -> textures -> objects progression reads top
to bottom; the top-k gallery lays out a row per feature and a column per most-activating image.
Both are ``image_grid`` of ``GridRow``s.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass(frozen=True)
class GridCell:
    """One image of a grid (a file or a PIL image) and the caption drawn above it."""

    image: Path | Image.Image
    caption: str = ""


@dataclass(frozen=True)
class GridRow:
    """A row of a grid: its label (drawn on the left) and its images, left to right."""

    label: str
    cells: tuple[GridCell, ...]


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
    return image_grid([GridRow(f"layer {layer}", tuple(GridCell(c.path, _panel_caption(c))
                                                     for c in row))
                       for layer, row in rows.items()], height=height, max_width=max_width)


def _panel_caption(cell: PanelCell) -> str:
    caption = f"feature {cell.feature}"
    if cell.activation is not None:
        caption += f"  act {cell.activation:.2f}"
    return caption


def image_grid(rows: Sequence[GridRow], *, height: int = 120, max_width: int = 1600
               ) -> Image.Image:
    """Labelled rows of captioned images on white, every image scaled to one height (at most
    ``height``, at least 40 px) that keeps the widest row under ``max_width`` pixels."""
    images = [[_open_rgb(c.image) for c in row.cells] for row in rows]
    font, small = _font(15), _font(13)
    label_width = max([_LABEL_WIDTH] + [_text_width(font, r.label) + 16 for r in rows])
    aspects = [[im.width / im.height for im in row] for row in images]
    widest = max((sum(a) + _GAP * len(a) / height for a in aspects), default=1.0)
    height = max(40, min(height, int((max_width - label_width) / max(widest, 1e-9))))
    widths = [[max(1, round(a * height)) for a in row] for row in aspects]
    canvas_width = label_width + max((sum(w + _GAP for w in row) for row in widths), default=0)
    canvas = Image.new("RGB", (canvas_width, len(rows) * (height + _HEADER + _GAP) + _GAP),
                       _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    top = _GAP
    for row, row_images, row_widths in zip(rows, images, widths, strict=True):
        draw.text((8, top + _HEADER + height // 2 - 8), row.label, fill=_INK, font=font)
        left = label_width
        for cell, image, width in zip(row.cells, row_images, row_widths, strict=True):
            resample = Image.NEAREST if image.height < height else Image.LANCZOS
            canvas.paste(image.resize((width, height), resample), (left, top + _HEADER))
            draw.text((left, top + 2), cell.caption, fill=_INK, font=small)
            left += width + _GAP
        top += height + _HEADER + _GAP
    return canvas


def _open_rgb(image: Path | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def _text_width(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> int:
    left, _, right, _ = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    return int(right - left)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()
