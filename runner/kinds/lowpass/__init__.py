"""The low-pass sweep (paper section 5: "ViTs depend far less on high-frequency information").

The paper publishes no definition; this project's: the model-sized input (after resize and
crop, before normalization) is filtered per channel in its 2-D FFT, keeping the frequencies
within radius r cycles per image (ideal circular filter), for each r of the sweep; a Gaussian
filter (sigma in cycles per image) and the high-pass counterparts (1 - mask) are options.
"""

from __future__ import annotations

from runner.kinds.base import Kind
from runner.kinds.lowpass.params import LowpassParams


class Lowpass(Kind):
    """Accuracy under low-pass (and optionally high-pass) filtering of the input."""

    name = "lowpass"
    version = 2  # 2: the `correct` artifact stores its dimensions as data
    Params = LowpassParams
    fusable = True
    summary = "top-1/top-5 of low-pass (or high-pass, Gaussian) filtered inputs over radii"


KIND = Lowpass()
