"""``spatial_drop``: does a single channel keep spatial information? (paper appendix F)

For each feature, its most activating images are reduced to their active patches (activation
> threshold; the rest blacked out) -- the initial image. Then x% of those active patches are
blacked out at random, and the number of active patches and the sum of their activations are
measured relative to the initial image. A curve linear in x means the channel's activation is
still tied to where things are; the paper finds this in every layer but the last.
"""

from __future__ import annotations

from runner.kinds.sites import SiteReadingKind
from runner.kinds.spatial_drop.params import SpatialDropParams


class SpatialDrop(SiteReadingKind):
    """Active-patch count and activation sum under random drops of the active patches."""

    name = "spatial_drop"
    version = 1
    Params = SpatialDropParams
    summary = ("appendix F: active-patch count and activation sum as x% of a feature's active "
               "patches are blacked out; linearity per layer")


KIND = SpatialDrop()
