"""The contrast sweep: top-1/top-5 when the model input's contrast is scaled by a factor c about
each image's mean, a worked example of a study kind living in its own package.

The definition: the model-sized input (after resize and crop, before normalization) x becomes
m + c * (x - m), m the image's mean over its channels and pixels, for each c of the sweep. With
c in [0, 1] the result stays in [0, 1], a valid image; c = 1 is the natural input.
"""

from __future__ import annotations

from runner.kinds.base import Kind
from vitstudy_contrast.params import ContrastParams


class Contrast(Kind):
    """Accuracy on inputs of reduced contrast."""

    name = "contrast"
    version = 1
    Params = ContrastParams
    fusable = True
    summary = "top-1/top-5 when the input's contrast is scaled by c about each image's mean"


KIND = Contrast()
