"""Foreground / background masking with bounding boxes, at the image's own resolution.

Boxes are PASCAL-VOC boxes as ``runner.data.base.Box`` defines them: 0-based pixel indices,
both ends inclusive (the pixel at column ``xmax`` is inside). Masking happens before resize and
crop, as the paper's authors did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

REGIONS = ("fg", "bg")


def box_slices(
    height: int, width: int, boxes: Sequence[tuple[int, int, int, int]]
) -> list[tuple[slice, slice]]:
    """(rows, columns) slices of each box clipped to the image (edges included); empty boxes
    and boxes wholly outside are left out."""
    out = []
    for xmin, ymin, xmax, ymax in boxes:
        x0, y0 = max(int(xmin), 0), max(int(ymin), 0)
        x1, y1 = min(int(xmax), width - 1), min(int(ymax), height - 1)
        if x0 <= x1 and y0 <= y1:
            out.append((slice(y0, y1 + 1), slice(x0, x1 + 1)))
    return out


def box_mask(
    height: int, width: int, boxes: Sequence[tuple[int, int, int, int]],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool (H, W): True on every pixel inside at least one box (edges included, clipped)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    for rows, cols in box_slices(height, width, boxes):
        mask[rows, cols] = True
    return mask


@dataclass(frozen=True)
class BandEdit:
    """An image changed only in one band of rows: ``pixels`` (3, len(rows), W) are the band's
    new rows; every other row is kept (``outside`` None) or filled with the colour ``outside``
    (3,). Its resize can reuse the unchanged rows' row pass (``runner.ops.pixels``)."""

    rows: slice
    pixels: torch.Tensor
    outside: torch.Tensor | None

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        """The edited copy of ``image`` (3, H, W)."""
        if self.outside is None:
            out = image.clone()
        else:
            out = self.outside.reshape(-1, 1, 1).expand_as(image).clone()
        out[:, self.rows] = self.pixels
        return out

    def row_pass(self, natural_rows: torch.Tensor,
                 resample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The row pass of the edited image, given that of the image (``natural_rows``) and
        the pass (``resample``, rows are independent in it): only the band is resampled again,
        and one row of the fill colour stands for every filled row."""
        if self.outside is None:
            out = natural_rows.clone()
        else:
            width = self.pixels.shape[-1]
            filled = resample(self.outside.reshape(-1, 1, 1).expand(-1, 1, width).contiguous())
            out = filled.expand(-1, natural_rows.shape[-2], -1).contiguous()
        if self.pixels.shape[-2]:
            out[:, self.rows] = resample(self.pixels)
        return out


def masked_band(
    image: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], region: str,
    fill: torch.Tensor,
) -> BandEdit:
    """``mask_region`` as an edit of the rows that meet a box (the band from the first such
    row to the last); ``apply`` gives the masked image."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, not {region!r}")
    colour = fill.to(device=image.device, dtype=image.dtype)
    slices = box_slices(image.shape[-2], image.shape[-1], boxes)
    first = min((rows.start for rows, _ in slices), default=0)
    last = max((rows.stop for rows, _ in slices), default=0)
    band = image[:, first:last]
    # rectangles copied by slicing: the same pixels as a where() over a box mask, without
    # touching the rest of a full-resolution image twice
    if region == "bg":
        pixels = band.clone()
        for rows, cols in slices:
            pixels[:, rows.start - first : rows.stop - first, cols] = colour.reshape(-1, 1, 1)
        return BandEdit(slice(first, last), pixels, None)
    pixels = colour.reshape(-1, 1, 1).expand_as(band).clone()
    for rows, cols in slices:
        shifted = slice(rows.start - first, rows.stop - first)
        pixels[:, shifted, cols] = band[:, shifted, cols]
    return BandEdit(slice(first, last), pixels, colour)


def mask_region(
    image: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], region: str,
    fill: torch.Tensor,
) -> torch.Tensor:
    """A copy of a float image (3, H, W) with one region replaced by the ``fill`` colour (3,).

    ``region="fg"`` keeps only the box pixels (the background is filled);
    ``region="bg"`` keeps only the background (the box pixels are filled).
    """
    return masked_band(image, boxes, region, fill).apply(image)
