"""Site names, plan-time checks of layers and features, and the `vitstudy sites` table."""

import pytest

from runner.errors import ModelError, PlanError
from runner.models import check_sites, format_sites, parse_site, site_name
from runner.models.base import ModelInfo, Preprocess, SiteInfo

PRE = Preprocess(32, 0.9, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _vit_info() -> ModelInfo:
    sites = {}
    for layer in range(2):
        for what, width in (("mlp", 128), ("q", 32), ("out", 32)):
            name = f"block{layer}.{what}"
            sites[name] = SiteInfo(name, layer, what, width, 1, (4, 4), True)
    return ModelInfo("tiny", 10, 2, True, sites, PRE)


def _cnn_info() -> ModelInfo:
    sites = {f"stage{s}": SiteInfo(f"stage{s}", s, "stage", 8 * 2**s, 0, (16 >> s, 16 >> s),
                                   False) for s in range(3)}
    return ModelInfo("cnn", 5, 3, False, sites, PRE)


def test_site_names_round_trip():
    assert site_name(3) == "block3.mlp" and site_name(0, "out") == "block0.out"
    assert site_name(2, "stage") == "stage2"
    assert parse_site("block11.v") == (11, "v") and parse_site("stage4") == (4, "stage")
    for bad in ("block1.fc", "blocks1.mlp", "stage", "block-1.mlp"):
        with pytest.raises(ModelError):
            parse_site(bad)
    with pytest.raises(ModelError):
        site_name(0, "attn")


def test_check_sites_accepts_existing_sites_and_features():
    info = _vit_info()
    assert check_sites(info, [1, 0]) == ["block1.mlp", "block0.mlp"]
    assert check_sites(info, [0], "q", features=[0, 31]) == ["block0.q"]


def test_check_sites_rejects_layer_out_of_range_as_plan_error():
    with pytest.raises(PlanError, match=r"block 2 does not exist in model tiny.*0\.\.1"):
        check_sites(_vit_info(), [0, 2])


def test_check_sites_rejects_feature_out_of_range():
    with pytest.raises(ModelError, match=r"feature index 128 .* block1\.mlp .* 128 features"):
        check_sites(_vit_info(), [1], features=[3, 128])
    with pytest.raises(ModelError, match="feature index -1"):
        check_sites(_vit_info(), [1], features=[-1])


def test_check_sites_rejects_site_kind_the_model_lacks():
    with pytest.raises(ModelError, match=r"no 'k' sites; it offers: mlp, q, out"):
        check_sites(_vit_info(), [0], "k")
    with pytest.raises(ModelError, match="not an integer"):
        check_sites(_vit_info(), ["0"])


def test_check_sites_on_a_cnn_uses_stages():
    info = _cnn_info()
    assert check_sites(info, [0, 2]) == ["stage0", "stage2"]
    with pytest.raises(ModelError, match=r"stage 3 does not exist .* stages 0\.\.2"):
        check_sites(info, [3], "stage")
    with pytest.raises(ModelError, match="32 features"):
        check_sites(info, [2], features=[32])


def test_format_sites_table():
    text = format_sites(_vit_info())
    assert text.splitlines() == [
        "tiny: depth 2, 10 classes, CLS token",
        "input 32x32, crop_pct 0.9, bicubic, mean (0.5, 0.5, 0.5), std (0.5, 0.5, 0.5)",
        "",
        "site        shape         features  prefix  grid",
        "block0.mlp  (B, 17, 128)       128       1   4x4",
        "block0.q    (B, 17, 32)         32       1   4x4",
        "block0.out  (B, 17, 32)         32       1   4x4",
        "block1.mlp  (B, 17, 128)       128       1   4x4",
        "block1.q    (B, 17, 32)         32       1   4x4",
        "block1.out  (B, 17, 32)         32       1   4x4",
    ]
    assert "stage2  (B, 32, 4, 4)" in format_sites(_cnn_info())


def test_parse_model_ref():
    from runner.models.refs import parse_model_ref

    vit = parse_model_ref("timm:vit_base_patch16_384.orig_in21k_ft_in1k")
    assert (vit.source, vit.name, vit.pretrained) == ("timm", "vit_base_patch16_384."
                                                      "orig_in21k_ft_in1k", True)
    clip = parse_model_ref("open_clip:ViT-B-32-quickgelu@openai")
    assert (clip.source, clip.name, clip.pretrained) == ("open_clip", "ViT-B-32-quickgelu",
                                                         "openai")
    assert parse_model_ref("resnet50@false").pretrained is False
    assert parse_model_ref("torchvision:resnet50@IMAGENET1K_V1").pretrained == "IMAGENET1K_V1"
    with pytest.raises(ModelError, match="unknown model source 'keras'"):
        parse_model_ref("keras:resnet50")
