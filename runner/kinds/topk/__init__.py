"""``topk``: one streaming pass over a dataset keeping, for every feature of the requested sites,
the k images that activate it most (mean over patch tokens, CLS excluded), with each kept
image's activation map on the patch grid."""

from __future__ import annotations

from runner.kinds.sites import SiteReadingKind
from runner.kinds.topk.params import TopKParams


class TopKKind(SiteReadingKind):
    """The most activating dataset images of features, as one share of the fused pass."""

    name = "topk"
    version = 1
    Params = TopKParams
    fusable = True
    summary = ("most activating dataset images of every feature (patch-token mean), with their "
               "activation maps")


KIND = TopKKind()
