"""``concepts``: what a feature's most activating images are, in WordNet. For each feature of
the requested sites, the classes of its k most activating images on a class-labelled dataset:
class purity, distinct classes, semantic spread (mean pairwise WordNet path distance) and a
label (the deepest synset covering half of them), each beside random k-image sets of the same
dataset. Measures the paper's section 6 claim: CLIP features respond to concepts that span
classes, ImageNet-trained ViT features to single objects (docs/concepts.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import KindParams
from runner.kinds.concepts.params import ConceptsParams
from runner.kinds.sites import SiteReadingKind

if TYPE_CHECKING:
    from runner.schema import ImagenetDataset, SyntheticDataset


class ConceptsKind(SiteReadingKind):
    """Class purity, spread and WordNet labels of features' top images, as one share of the
    fused pass."""

    name = "concepts"
    version = 1
    Params = ConceptsParams
    fusable = True
    summary = ("WordNet class purity, semantic spread and label of each feature's top-k "
               "images, against random k-image sets")

    def check_dataset(self, params: KindParams, name: str,
                      spec: SyntheticDataset | ImagenetDataset) -> None:
        """Plan-time: every class of the dataset is a WordNet noun (``DatasetError``)."""
        from runner.data.wordnet import dataset_wnids

        dataset_wnids(name, spec)


KIND = ConceptsKind()
