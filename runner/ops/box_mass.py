"""Activation maps against object boxes, in the model's input frame (docs/maps.md).

A feature's activation map lives on the patch grid of the resized and centre-cropped input;
boxes are in the original image's pixels (``runner.data.base.Box``: 0-based, both ends
inclusive). ``input_frame_boxes`` carries the boxes through the same resize and crop as
``runner.ops.pixels.resize_and_crop``; ``cell_coverage`` gives each grid cell the share of its
area inside the boxes. The map is read as constant over each cell (a patch token speaks for its
patch), so the measures below are exact integrals of that piecewise-constant map over the boxes:
no interpolation adds structure the tokens do not have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.ops.pixels import crop_geometry


def input_frame_boxes(boxes: torch.Tensor, height: int, width: int, size: int,
                      crop_pct: float) -> torch.Tensor:
    """(N, 4) float boxes ``[x0, y0, x1, y1)`` in the model input's continuous pixel frame
    (0..size), clipped to it, from (N, 4) inclusive boxes of a ``height`` x ``width`` image.

    Pixel ``xmin..xmax`` covers ``[xmin, xmax + 1)``; the shorter side is scaled to
    ``floor(size / crop_pct)`` (each axis by its own factor, as the resize rounds) and the
    centre ``size`` x ``size`` is cut at the offsets ``center_crop`` uses."""
    geometry = crop_geometry(height, width, size, crop_pct)
    (rh, rw), top, left = geometry.resized, geometry.top, geometry.left
    b = boxes.to(torch.float64).reshape(-1, 4)
    x = torch.stack([b[:, 0], b[:, 2] + 1]) * (rw / width) - left
    y = torch.stack([b[:, 1], b[:, 3] + 1]) * (rh / height) - top
    return torch.stack([x[0], y[0], x[1], y[1]], dim=1).clamp(0.0, float(size))


def _overlap(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size): the length of ``[lo, hi)`` inside each unit pixel ``[j, j + 1)``."""
    j = torch.arange(size, dtype=lo.dtype, device=lo.device)
    return (torch.minimum(hi[:, None], j + 1) - torch.maximum(lo[:, None], j)).clamp(min=0.0)


def pixel_coverage(frame_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size): the share of each input pixel inside the union of ``frame_boxes``
    (``input_frame_boxes``). Each box covers a pixel by its exact overlap area; the union is
    the largest cover per pixel, exact except on a pixel that two box edges both cut."""
    frame_boxes = frame_boxes.reshape(-1, 4)
    if frame_boxes.shape[0] == 0:
        return torch.zeros(size, size, dtype=torch.float64, device=frame_boxes.device)
    ox = _overlap(frame_boxes[:, 0], frame_boxes[:, 2], size)
    oy = _overlap(frame_boxes[:, 1], frame_boxes[:, 3], size)
    return (oy[:, :, None] * ox[:, None, :]).amax(dim=0)


def cell_coverage(frame_boxes: torch.Tensor, size: int, grid: tuple[int, int]) -> torch.Tensor:
    """(gh, gw): the share of each grid cell (patch) of the input inside the boxes: the mean of
    ``pixel_coverage`` over the cell's pixels (adaptive pooling when the grid does not divide
    the input, as for some CNN stages)."""
    pixels = pixel_coverage(frame_boxes, size)
    return F.adaptive_avg_pool2d(pixels[None, None], tuple(grid))[0, 0]


def positive_share(maps: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """(...): the share of each map's positive mass inside the boxes, for maps (..., gh, gw) and
    cell coverages broadcastable to them: sum(relu(m) * c) / sum(relu(m)); NaN for a map with
    no positive value."""
    mass = maps.to(torch.float64).clamp(min=0.0)
    total = mass.sum(dim=(-2, -1))
    inside = (mass * coverage.to(mass)).sum(dim=(-2, -1))
    return torch.where(total > 0, inside / total.clamp(min=1e-300), torch.nan)


def peak_coverage(maps: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """(...): the pointing game on a patch-grid map: the share of the peak cell inside the
    boxes (1: the peak lies wholly in a box, 0: wholly outside), averaged over tied peaks."""
    values = maps.to(torch.float64)
    peak = values == values.amax(dim=(-2, -1), keepdim=True)
    cover = coverage.to(values).expand_as(values)
    return (cover * peak).sum(dim=(-2, -1)) / peak.sum(dim=(-2, -1))


def area_share(coverage: torch.Tensor) -> torch.Tensor:
    """(...): chance: the boxes' share of the input, as the mean cell coverage. A map unrelated
    to the boxes (uniform, or with its peak at a random cell) scores this on both measures."""
    return coverage.to(torch.float64).mean(dim=(-2, -1))
