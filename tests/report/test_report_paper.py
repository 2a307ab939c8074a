"""Model families, library names and matching study models to the paper's."""

from __future__ import annotations

import pytest

from runner.present.families import model_family, name_family
from runner.present.paper import TABLE1, TABLE2, library_name, match_paper_model
from runner.schema import ModelSpec, TrainSpec


@pytest.mark.parametrize("name, family", [
    ("vit_base_patch16_384.orig_in21k_ft_in1k", "ViT"),
    ("deit_small_patch16_224", "ViT"),
    ("swin_tiny_patch4_window7_224", "ViT"),
    ("open_clip/ViT-B-32.openai", "ViT"),
    ("convit_tiny", "ViT"),
    ("vit_base_r50_s16_384", "ViT"),
    ("tiny_vit_5m_224", "ViT"),
    ("resnet50.tv_in1k", "CNN"),
    ("torchvision/mobilenet_v2.IMAGENET1K_V1", "CNN"),
    ("densenet121", "CNN"),
    ("convnext_tiny", "CNN"),
    ("open_clip/RN50.openai", "CNN"),
    ("my_model", "other"),
])
def test_name_family(name, family):
    assert name_family(name) == family


def test_family_falls_back_to_the_alias():
    assert model_family("mystery_net", "tiny_cnn") == "CNN"
    assert model_family(None, "tiny_vit") == "ViT"
    assert model_family("resnet18", "vit_lookalike") == "CNN"  # library name first


def test_library_names():
    assert library_name(ModelSpec(source="timm", name="vit_base_patch16_384",
                                  pretrained="orig_in21k_ft_in1k")) == (
        "vit_base_patch16_384.orig_in21k_ft_in1k")
    assert library_name(ModelSpec(source="timm", name="resnet50.tv_in1k")) == "resnet50.tv_in1k"
    assert library_name(ModelSpec(source="torchvision", name="resnet50",
                                  pretrained="IMAGENET1K_V1")) == (
        "torchvision/resnet50.IMAGENET1K_V1")
    assert library_name(ModelSpec(source="torchvision", name="resnet50")) == (
        "torchvision/resnet50")
    assert library_name(ModelSpec(source="open_clip", name="ViT-B-32",
                                  pretrained="openai")) == "open_clip/ViT-B-32.openai"
    assert library_name(ModelSpec(source="checkpoint", arch="vit_tiny_patch16_224",
                                  path="x.pt")) == "vit_tiny_patch16_224"
    trained = ModelSpec(source="timm", name="vit_base_patch16_384.orig_in21k_ft_in1k",
                        train=TrainSpec(dataset="shapes"))
    assert library_name(trained) == "vit_base_patch16_384"  # its weights are the study's own


def test_paper_matches():
    exact = match_paper_model("vit_base_patch16_384.orig_in21k_ft_in1k")
    assert (exact.model.label, exact.match) == ("ViT-B/16", "exact")
    tv = match_paper_model("torchvision/resnet50.IMAGENET1K_V1")
    assert (tv.model.label, tv.match) == ("ResNet-50", "exact")
    other = match_paper_model("vit_base_patch16_384.augreg_in21k_ft_in1k")
    assert (other.model.label, other.match) == ("ViT-B/16", "architecture")
    assert match_paper_model("torchvision/resnet50.IMAGENET1K_V2").match == "architecture"
    assert match_paper_model("vit_base_patch16_224.orig_in21k_ft_in1k") is None  # 224 px
    assert match_paper_model("vit_tiny_patch16_224") is None
    assert match_paper_model(None) is None


def test_paper_numbers_are_the_published_ones():
    assert TABLE1["ViT-B/16"][("top1", "isolated")] == 78.61
    assert TABLE1["ViT-B/16"][("top5", "patch_maximum")] == 95.65
    assert TABLE2["ResNet-50"] == {"full": 98.00, "fg": 89.69, "bg": 18.69}
    assert TABLE2["ViT-B/16"] == {"full": 99.22, "fg": 95.64, "bg": 31.59}
    assert len(TABLE2) == 8
