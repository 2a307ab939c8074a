"""Foreground / background reliance (paper section 5, Table 2).

Each image with boxes is evaluated three ways: as is (``full``), with only its box pixels kept
(``fg``) and with its box pixels blanked (``bg``). Masking happens at the image's own resolution,
before resize and crop. Table 2 reports top-5 on fg and bg divided by top-5 on full, x100.
"""

from __future__ import annotations

from runner.kinds.base import Kind
from runner.kinds.fgbg.params import FgbgParams


class Fgbg(Kind):
    """Foreground-only and background-only accuracy (Table 2)."""

    name = "fgbg"
    version = 2  # 2: the `correct` artifact stores its dimensions as data
    Params = FgbgParams
    fusable = True
    needs_boxes = True
    summary = "top-1/top-5 on full, foreground-only and background-only images (Table 2)"


KIND = Fgbg()
