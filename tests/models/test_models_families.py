"""Swin, PiT, ConViT, CoaT, Twins and CNNs: canonical sites, token layouts, truncation."""

import pytest
import torch
import torch.nn.functional as F
from models_tiny import COAT, CONVIT, PIT, RESNET, SWIN, TWINS

from runner.models import inspect_model, load_model
from runner.schema import ModelSpec

TRANSFORMERS = {"swin": SWIN, "pit": PIT, "convit": CONVIT, "coat": COAT, "twins": TWINS}


@pytest.fixture(scope="module")
def models():
    return {k: load_model(spec) for k, spec in TRANSFORMERS.items()}


def _images(n=2, size=32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("key", list(TRANSFORMERS))
def test_sites_match_captured_shapes_and_layout(models, key):
    model = models[key]
    got = model.capture(_images(), list(model.info.sites), stop_early=False)
    for name, site in model.info.sites.items():
        gh, gw = site.grid
        assert site.tokens
        assert got[name].shape == (2, site.prefix_tokens + gh * gw, site.n_features), name


def test_token_layouts_per_family(models):
    sites = {k: m.info.sites for k, m in models.items()}
    # Swin: no prefix, grid halves per stage; the block output is NHWC, read as tokens
    assert [sites["swin"][f"block{i}.out"].grid for i in range(3)] == [(16, 16), (16, 16), (8, 8)]
    assert sites["swin"]["block0.mlp"].prefix_tokens == 0
    assert "block0.q" not in sites["swin"]  # windowed attention has no per-token q/k/v
    # PiT distilled: CLS + distillation token in every stage
    assert [(sites["pit"][f"block{i}.mlp"].prefix_tokens, sites["pit"][f"block{i}.mlp"].grid)
            for i in range(2)] == [(2, (7, 7)), (2, (4, 4))]
    # ConViT: the CLS token joins after the local (GPSA) blocks
    assert [sites["convit"][f"block{i}.mlp"].prefix_tokens for i in range(3)] == [0, 0, 1]
    assert "block0.q" not in sites["convit"] and "block2.q" in sites["convit"]
    # CoaT-Lite: a CLS token per stage, grids 8, 4, 2, 1
    assert [sites["coat"][f"block{i}.out"].grid for i in range(4)] == [(8, 8), (4, 4), (2, 2),
                                                                      (1, 1)]
    assert all(sites["coat"][f"block{i}.out"].prefix_tokens == 1 for i in range(4))
    assert [sites["twins"][f"block{i}.mlp"].grid for i in range(2)] == [(8, 8), (4, 4)]


def test_swin_mlp_site_equals_hand_computation(models):
    model = models["swin"]
    net, x01 = model.net, _images()
    got = model.capture(x01, ["block1.mlp", "block1.out"])
    x = net.patch_embed(model.normalize(x01))
    stage = net.layers[0]
    x = stage.downsample(x)
    x = stage.blocks[0](x)
    blk = stage.blocks[1]
    B, H, W, C = x.shape
    y = (x + blk._attn(blk.norm1(x))).reshape(B, H * W, C)
    mlp = F.gelu(F.linear(blk.norm2(y), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
    out = y + F.linear(mlp, blk.mlp.fc2.weight, blk.mlp.fc2.bias)
    torch.testing.assert_close(got["block1.mlp"], mlp, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got["block1.out"], out, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("key", ["pit", "convit", "coat", "twins"])
def test_mlp_site_is_gelu_of_fc1_of_the_mlp_input(models, key):
    """The site is GELU(fc1(z)) where z is what the block feeds its MLP (norm2 of the stream)."""
    model = models[key]
    layer = model.info.depth - 1
    path = model._readers[f"block{layer}.mlp"].module.rsplit(".", 1)[0]
    mlp_module = model.net.get_submodule(path)
    seen = {}
    handle = mlp_module.register_forward_pre_hook(lambda m, a: seen.setdefault("z", a[0]))
    try:
        got = model.capture(_images(), [f"block{layer}.mlp"])[f"block{layer}.mlp"]
    finally:
        handle.remove()
    want = F.gelu(F.linear(seen["z"], mlp_module.fc1.weight, mlp_module.fc1.bias))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("key", list(TRANSFORMERS))
def test_truncated_equals_full(models, key):
    model, x = models[key], _images()
    sites = ["block0.mlp", "block1.out"]
    early = model.capture(x, sites)
    full = model.capture(x, sites, stop_early=False)
    assert all(torch.equal(early[s], full[s]) for s in sites)


def test_non_vit_transformers_have_no_vit_parts(models):
    assert all(m.vit is None for m in models.values())


def test_timm_cnn_stages():
    model = load_model(RESNET)
    info = model.info
    assert list(info.sites) == [f"stage{s}" for s in range(5)]
    assert [s.grid for s in info.sites.values()] == [(112, 112), (56, 56), (28, 28), (14, 14),
                                                     (7, 7)]
    x = _images(1, 64)
    got = model.capture(x, ["stage2"])
    net = model.net
    z = net.maxpool(net.act1(net.bn1(net.conv1(model.normalize(x)))))
    torch.testing.assert_close(got["stage2"], net.layer2(net.layer1(z)))
    assert info.sites["stage4"].n_features == 512 and not info.sites["stage4"].tokens
    assert model.vit is None and info.depth == 5 and not info.has_cls_token


@pytest.mark.parametrize("name,paths", [
    ("resnet18", ["relu", "layer1", "layer2", "layer3", "layer4"]),
    ("mobilenet_v2", ["features.1", "features.3", "features.6", "features.13", "features.18"]),
])
def test_torchvision_stages_by_resolution(name, paths):
    spec = ModelSpec(source="torchvision", name=name, pretrained=False, num_classes=3)
    model = load_model(spec)
    assert [model._readers[f"stage{s}"].module for s in range(5)] == paths
    info = inspect_model(spec)
    assert [s.grid for s in info.sites.values()] == [(112, 112), (56, 56), (28, 28), (14, 14),
                                                     (7, 7)]
    assert info.num_classes == 3 and info.preprocess.size == 224
    x = _images(1, 64)
    assert torch.equal(model(x), model.net(model.normalize(x)))
    got = model.capture(x, ["stage1"])["stage1"]
    assert got.shape[1] == info.sites["stage1"].n_features
