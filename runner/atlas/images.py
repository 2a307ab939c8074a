"""A feature's images: two small WebP strips of square cells, cropped into place by the pages.

``f<feature>.webp`` holds every variant's optimized image; ``f<feature>-top.webp`` holds, for
each stored ranking, the top images and then the same images with their activation maps drawn
over them. Pages show one cell by cropping its strip with CSS, so a feature costs at most two
files however many cells it has, and the grid's thumbnail is a strip's first cell. The parts
are apart because they change apart: a new visualize task redraws only optimized strips (PIL
alone), a new ranking only top strips. Top images are decoded from the study's datasets as the
model saw them (resized and cropped by its preprocessing); where a dataset cannot be opened, a
stored ``overlay`` or the activation map alone stands in and the strip is marked incomplete
(redrawn by the next build).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from runner.atlas.inputs import FeatureData
from runner.render import map_image, overlay

if TYPE_CHECKING:
    from runner.spec import LoadedStudy

#: Bump when the strip's drawing changes: every strip is then redrawn.
STRIP_FORMAT = 1
#: WebP quality of the strips (0-100).
QUALITY = 75
#: libwebp's effort (0-6): 2 encodes a strip in 2.1 ms against 5.2 ms at its default 4, for
#: about 9% more bytes (a 640x64 strip: 3.45 KB against 3.17 KB)
WEBP_METHOD = 2
#: A cell whose image is missing.
GREY = (200, 200, 200)


#: The strips of a feature: ``opt`` (optimized images), ``top`` (top images and overlays).
PARTS = ("opt", "top")


@dataclass(frozen=True)
class Cell:
    """One square of a feature's strips: an optimized image (``source`` = variant), or a top
    image or its overlay (``source`` = ranking, ``rank`` = its place in it)."""

    what: str  # "optimized" | "image" | "overlay"
    source: int
    rank: int = 0

    @property
    def part(self) -> str:
        return "opt" if self.what == "optimized" else "top"


def cells(feature: FeatureData) -> dict[str, list[Cell]]:
    """Each non-empty strip's cells, left to right (the pages and the drawing both follow
    this)."""
    out = {"opt": [Cell("optimized", i) for i in range(len(feature.optimized))], "top": []}
    for s, top in enumerate(feature.top):
        ranks = range(len(top.indices))
        out["top"] += [Cell("image", s, r) for r in ranks] + [Cell("overlay", s, r) for r in ranks]
    return {part: layout for part, layout in out.items() if layout}


def position(feature: FeatureData, cell: Cell) -> int:
    """Where ``cell`` is in its strip (``cells(feature)[cell.part].index(cell)``, by arithmetic:
    pages place thousands of cells)."""
    if cell.what == "optimized":
        return cell.source
    before = sum(2 * len(t.indices) for t in feature.top[: cell.source])
    k = len(feature.top[cell.source].indices)
    return before + (k if cell.what == "overlay" else 0) + cell.rank


def strip_digest(feature: FeatureData, part: str, cell_size: int) -> str:
    """What a strip is drawn from: the optimized images' digests, or the rankings' digests,
    dataset indices and stored overlays; the cell size and the drawing's format."""
    parts: list[Any] = [STRIP_FORMAT, QUALITY, cell_size, part]
    if part == "opt":
        parts.append([o.sha256 for o in feature.optimized])
    else:
        parts += [[t.task_key, t.npz_sha256, t.indices.tolist(),
                   sorted((r, sha) for r, (_, sha) in t.overlays.items())] for t in feature.top]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class ImageSource:
    """Dataset images as each model saw them, at a cell's size; datasets and models are
    opened on first use, and one that cannot be opened gives no images."""

    def __init__(self, loaded: LoadedStudy) -> None:
        self._loaded = loaded
        self._datasets: dict[str, Any] = {}
        self._preprocess: dict[str, Any] = {}
        self._cells: dict[tuple[str, str, int, int], Image.Image | None] = {}

    def cell(self, dataset: str | None, model: str, index: int, size: int) -> Image.Image | None:
        """Image ``index`` of ``dataset`` as ``model`` saw it, at most ``size`` px square; None
        when it cannot be had."""
        if dataset is None or index < 0:
            return None
        key = (dataset, model, index, size)
        if key not in self._cells:
            self._cells[key] = self._decode(dataset, model, index, size)
        return self._cells[key]

    def _decode(self, dataset: str, model: str, index: int, size: int) -> Image.Image | None:
        from runner.ops.pixels import resize_and_crop, to_unit
        from runner.render import to_pil

        data, pre = self._dataset(dataset), self._model_preprocess(model)
        if data is None or pre is None or index >= len(data):
            return None
        image = data.decode(index)
        if image is None:
            return None
        seen = resize_and_crop(to_unit(image), pre.size, pre.crop_pct, pre.interpolation)
        return _fit(to_pil(seen), size)

    def _dataset(self, name: str) -> Any:
        if name not in self._datasets:
            from runner.data import open_dataset
            from runner.errors import UserError

            spec = self._loaded.study.datasets.get(name)
            try:
                self._datasets[name] = None if spec is None else open_dataset(name, spec)
            except (UserError, OSError):
                self._datasets[name] = None
        return self._datasets[name]

    def _model_preprocess(self, model: str) -> Any:
        if model not in self._preprocess:
            from runner.errors import UserError
            from runner.models import inspect_model

            spec = self._loaded.study.models.get(model)
            try:
                self._preprocess[model] = None if spec is None else inspect_model(
                    spec, base_dir=self._loaded.base_dir, shapes_only=True).preprocess
            except (UserError, OSError):
                self._preprocess[model] = None
        return self._preprocess[model]


def draw_strip(feature: FeatureData, part: str, source: ImageSource | None, cell_max: int
               ) -> tuple[bytes, bool]:
    """One of the feature's strips as WebP bytes, and whether every cell was drawn from what it
    stands for (False: a dataset image was missing and a stand-in was drawn)."""
    layout = cells(feature)[part]
    tiles = [_draw_cell(feature, cell, source, cell_max) for cell in layout]
    drawn = [tile.width for tile, _ in tiles if tile is not None]
    size = min([cell_max, *drawn]) if drawn else cell_max
    strip = Image.new("RGB", (size * len(layout), size), GREY)
    for i, (tile, _) in enumerate(tiles):
        if tile is not None:
            strip.paste(tile if tile.width == size else tile.resize((size, size), Image.BILINEAR),
                        (i * size, 0))
    buffer = io.BytesIO()
    strip.save(buffer, "WEBP", quality=QUALITY, method=WEBP_METHOD)
    return buffer.getvalue(), all(whole for _, whole in tiles)


def _draw_cell(feature: FeatureData, cell: Cell, source: ImageSource | None, size: int
               ) -> tuple[Image.Image | None, bool]:
    """One cell's picture, at most ``size`` px square (None: leave it grey), and whether it is
    the real thing."""
    if cell.what == "optimized":
        return _open(feature.optimized[cell.source].file, size), True
    top = feature.top[cell.source]
    index = int(top.indices[cell.rank])
    if index < 0:
        return None, True  # the dataset had fewer images than the ranking keeps
    image = None if source is None else source.cell(top.dataset, feature.id.model, index, size)
    amap = None if top.maps is None else np.asarray(top.maps[cell.rank], dtype=np.float32)
    if image is not None:
        return (image if cell.what == "image" or amap is None else overlay(image, amap)), True
    if cell.what == "overlay" and cell.rank in top.overlays:
        return _open(top.overlays[cell.rank][0], size), False
    if cell.what == "overlay" and amap is not None:
        return map_image(amap, (size, size)), False
    return None, False


def _open(path: Path, size: int) -> Image.Image | None:
    """A stored PNG, square, at most ``size`` px, or None when it cannot be read."""
    try:
        with Image.open(path) as image:
            return _fit(image.convert("RGB"), size)
    except OSError:
        return None


def _fit(image: Image.Image, size: int) -> Image.Image:
    """A square image no larger than ``size`` px (smaller ones keep their size)."""
    side = min(size, image.width)
    return image if image.size == (side, side) else image.resize((side, side), Image.BILINEAR)
