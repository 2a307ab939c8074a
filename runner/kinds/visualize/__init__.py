"""``visualize``: activation maximization of feed-forward features (paper section 3, appendix B),
many features at once. Each feature owns one image; the batch is features x augmented copies,
the forward stops after the deepest requested block, and the loss is the sum over features of
each one's own loss, so a feature's image is what optimizing it alone would give. Failed
optimizations are retried (batched) and flagged; every image is measured against small changes
(kept_*), and with a dataset against the best dataset image (naturalness) and drawn as the
paper's Figure 2 panel."""

from __future__ import annotations

from runner.kinds.base import KindParams
from runner.kinds.sites import SiteReadingKind, TopFeatures
from runner.kinds.visualize.params import VisualizeParams


class Visualize(SiteReadingKind):
    """Activation maximization of features; a dataset adds rankings and panels."""

    name = "visualize"
    version = 2  # 2: retries of failed optimizations, naturalness and kept_* metrics
    Params = VisualizeParams
    needs_dataset = False
    summary = ("activation maximization of feed-forward features (paper recipe), with Figure 2 "
               "panels when a dataset is given")

    def requires_dataset(self, params: KindParams) -> bool:
        """``features: {top: N}`` ranks features on a dataset."""
        return isinstance(params.features, TopFeatures)


KIND = Visualize()
