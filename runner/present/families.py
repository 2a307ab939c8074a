"""ViT or CNN? A model's family from its library name (or, failing that, its study alias).

The name is split into lower-case tokens at ``_ - . /``; the first token that starts like a
known transformer (``vit``, ``deit``, ``swin``, ...) or a known CNN (``resnet``, ``mobilenet``,
``densenet``, ``RN50``, ...) decides. Hybrids named after their transformer (``vit_base_r50``,
``maxvit``) count as ViTs. Anything else is ``other``.
"""

from __future__ import annotations

import re
from typing import Literal

Family = Literal["ViT", "CNN", "other"]

_VIT = re.compile(
    r"^(vit|deit|swin|beit|eva|coat|convit|pit|twins|cait|xcit|crossvit|tnt|levit|mvit|maxvit|"
    r"mobilevit|fastvit|efficientvit|volo|flexivit|siglip|dino|hiera|t2t)"
)
_CNN = re.compile(
    r"^(resnet|resnext|wide|mobilenet|densenet|efficientnet|vgg|repvgg|convnext|convnet|regnet|"
    r"inception|googlenet|alexnet|squeezenet|shufflenet|mnasnet|csp|darknet|dla|dpn|ghostnet|"
    r"hrnet|rexnet|res2net|seresnet|senet|skresnet|ecaresnet|nfnet|rn\d|cnn|lenet|xception|"
    r"tresnet|mixnet|fbnet|lcnet|vovnet|selecsls|nasnet|pnasnet|gernet|tinynet|mobileone)"
)
#: Display order of families in tables and legends.
FAMILY_ORDER: tuple[Family, ...] = ("ViT", "CNN", "other")


def name_family(name: str) -> Family:
    """The family a single name suggests, ``other`` when no token is recognised."""
    for token in re.split(r"[_\-./\s]+", name.lower()):
        if _VIT.match(token):
            return "ViT"
        if _CNN.match(token):
            return "CNN"
    return "other"


def model_family(library_name: str | None, alias: str | None = None) -> Family:
    """The family of a model: from its library name first, then from its study alias."""
    for name in (library_name, alias):
        if name:
            family = name_family(name)
            if family != "other":
                return family
    return "other"
