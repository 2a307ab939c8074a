"""The paper's published numbers (Tables 1 and 2, PAPER.md), keyed by the models it measured.

A study model matches a paper model *exactly* when its library name is one of the weights the
paper used (the original Google ViT weights at 384 px, torchvision's ImageNet-1k V1 CNNs), and
by *architecture* when only the architecture agrees (other pretrained weights, or weights
trained in the study). Reports mark architecture matches: the paper's number is then a
reference point, not a reproduction target.

Library names are what ``library_name`` makes of a model entry: the timm name with its
pretrained tag (``vit_base_patch16_384.orig_in21k_ft_in1k``), ``torchvision/<name>`` with the
weights enum as tag (``torchvision/resnet50.IMAGENET1K_V1``), ``open_clip/<name>.<tag>``, or a
checkpoint's ``arch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from runner.schema import ModelSpec

Match = Literal["exact", "architecture"]


@dataclass(frozen=True)
class PaperModel:
    """A model the paper measured: its label there, its exact weights, its architecture names."""

    label: str
    weights: tuple[str, ...]  # library names of the very weights the paper used
    architectures: tuple[str, ...]  # library names without tag that share the architecture


@dataclass(frozen=True)
class PaperMatch:
    """How a study model relates to a paper model."""

    model: PaperModel
    match: Match


PAPER_MODELS: tuple[PaperModel, ...] = (
    PaperModel("ViT-B/16", ("vit_base_patch16_384.orig_in21k_ft_in1k",),
               ("vit_base_patch16_384",)),
    # timm has no original-weights B/32 or L/16 at 384 px: those match by architecture only.
    PaperModel("ViT-B/32", (), ("vit_base_patch32_384",)),
    PaperModel("ViT-L/16", (), ("vit_large_patch16_384",)),
    PaperModel("ViT-L/32", ("vit_large_patch32_384.orig_in21k_ft_in1k",),
               ("vit_large_patch32_384",)),
    PaperModel("ResNet-50", ("resnet50.tv_in1k", "torchvision/resnet50.IMAGENET1K_V1"),
               ("resnet50", "torchvision/resnet50")),
    PaperModel("ResNet-152", ("resnet152.tv_in1k", "torchvision/resnet152.IMAGENET1K_V1"),
               ("resnet152", "torchvision/resnet152")),
    PaperModel("MobileNetV2", ("torchvision/mobilenet_v2.IMAGENET1K_V1",),
               ("mobilenetv2_100", "torchvision/mobilenet_v2")),
    PaperModel("DenseNet121", ("densenet121.tv_in1k", "torchvision/densenet121.IMAGENET1K_V1"),
               ("densenet121", "torchvision/densenet121")),
)

#: Table 1 (ViT-B/16, ImageNet val): (accuracy, variant) -> percent. ``patch_mean_token`` is
#: head(mean of patch tokens), from the authors' code log, not from the table.
TABLE1: dict[str, dict[tuple[str, str], float]] = {
    "ViT-B/16": {
        ("top1", "natural"): 84.20, ("top5", "natural"): 97.16,
        ("top1", "isolated"): 78.61, ("top5", "isolated"): 94.18,
        ("top1", "patch_average"): 75.75, ("top5", "patch_average"): 90.99,
        ("top1", "patch_maximum"): 80.16, ("top5", "patch_maximum"): 95.65,
        ("top1", "patch_mean_token"): 83.40, ("top5", "patch_mean_token"): 96.97,
    },
}

#: Table 2: raw top-5 on full images, then normalized top-5 (100 * masked / full) on
#: foreground-only and background-only images.
TABLE2: dict[str, dict[str, float]] = {
    label: {"full": full, "fg": fg, "bg": bg}
    for label, full, fg, bg in (
        ("ViT-B/32", 98.44, 93.91, 28.10),
        ("ViT-L/16", 99.57, 96.18, 33.69),
        ("ViT-L/32", 99.32, 93.89, 31.07),
        ("ViT-B/16", 99.22, 95.64, 31.59),
        ("ResNet-50", 98.00, 89.69, 18.69),
        ("ResNet-152", 98.85, 90.74, 19.68),
        ("MobileNetV2", 96.09, 86.84, 15.94),
        ("DenseNet121", 96.55, 89.58, 17.53),
    )
}


def library_name(spec: ModelSpec) -> str:
    """The name reports use to classify a study model and match it to the paper."""
    if spec.source == "checkpoint":
        return str(spec.arch)
    name = str(spec.name)
    tag = spec.pretrained if isinstance(spec.pretrained, str) else None
    if spec.train is not None:  # weights come from the study's own training, not the tag
        name, tag = name.split(".", 1)[0], None
    if spec.source == "timm":
        return f"{name}.{tag}" if tag and "." not in name else name
    base = f"{spec.source}/{name}"
    return f"{base}.{tag}" if tag else base


def match_paper_model(name: str | None) -> PaperMatch | None:
    """The paper model a library name is (exact weights) or shares an architecture with."""
    if not name:
        return None
    for model in PAPER_MODELS:
        if name in model.weights:
            return PaperMatch(model, "exact")
    base = name.split(".", 1)[0]
    for model in PAPER_MODELS:
        if base in model.architectures:
            return PaperMatch(model, "architecture")
    return None


def paper_number(match: PaperMatch | None, lookup: Callable[[str], float | None]
                 ) -> tuple[float, str, str] | None:
    """(number, paper model label, match) of a study model the paper measured (``match``),
    where ``lookup`` finds a number for the paper model's label; None otherwise."""
    if match is None:
        return None
    number = lookup(match.model.label)
    return None if number is None else (number, match.model.label, match.match)
