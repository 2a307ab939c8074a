"""Foreground / background masking with bounding boxes, at the image's own resolution.

Boxes are PASCAL-VOC boxes as ``runner.data.base.Box`` defines them: 0-based pixel indices,
both ends inclusive (the pixel at column ``xmax`` is inside). Masking happens before resize and
crop, as the paper's authors did.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def mask_region(
    image: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], region: str,
    fill: torch.Tensor,
) -> torch.Tensor:
    """A copy of a float image (3, H, W) with one region replaced by the ``fill`` colour (3,).

    ``region="fg"`` keeps only the box pixels (the background is filled);
    ``region="bg"`` keeps only the background (the box pixels are filled).
    """
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, not {region!r}")
    colour = fill.to(device=image.device, dtype=image.dtype).reshape(-1, 1, 1)
    slices = box_slices(image.shape[-2], image.shape[-1], boxes)
    # rectangles copied by slicing: the same pixels as a where() over a box mask, without
    # touching the rest of a full-resolution image twice
    if region == "bg":
        out = image.clone()
        for rows, cols in slices:
            out[:, rows, cols] = colour
        return out
    out = colour.expand_as(image).clone()
    for rows, cols in slices:
        out[:, rows, cols] = image[:, rows, cols]
    return out
