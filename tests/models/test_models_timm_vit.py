"""timm ViTs (CLS, DeiT distilled, registers): sites against hand computations, ViTParts,
truncated forward, preprocessing against timm's own transform."""

import pytest
import torch
import torch.nn.functional as F
from models_tiny import DEIT, VIT, VIT_GAP, VIT_REG
from PIL import Image

from runner.models import inspect_model, load_model, pixel_transform
from runner.models.base import Preprocess

ALL = {"vit": VIT, "deit_distilled": DEIT, "registers": VIT_REG, "gap_registers": VIT_GAP}


@pytest.fixture(scope="module")
def models():
    return {k: load_model(spec) for k, spec in ALL.items()}


def _images(n=2, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _attention_by_hand(attn, z):
    """timm Attention written out: fused qkv, per-head softmax(q k^T / sqrt(d)) v, proj."""
    B, N, C = z.shape
    h = attn.num_heads
    q, k, v = F.linear(z, attn.qkv.weight, attn.qkv.bias).chunk(3, dim=-1)
    heads = [t.view(B, N, h, C // h).transpose(1, 2) for t in (q, k, v)]
    weights = (heads[0] @ heads[1].transpose(-2, -1) * (C // h) ** -0.5).softmax(dim=-1)
    out = (weights @ heads[2]).transpose(1, 2).reshape(B, N, C)
    return F.linear(out, attn.proj.weight, attn.proj.bias), (q, k, v)


@pytest.mark.parametrize("key", list(ALL))
def test_block_sites_equal_hand_computation(models, key):
    model = models[key]
    net, x01 = model.net, _images()
    layer = 1
    got = model.capture(x01, [f"block{layer}.{w}" for w in ("mlp", "q", "k", "v", "out")])
    # the block's input, from timm's own forward_features run up to the block
    pre = model.preprocess
    normalized = (x01 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(
        1, 3, 1, 1)
    x = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(normalized))))
    for blk in net.blocks[:layer]:
        x = blk(x)
    blk = net.blocks[layer]
    attn_out, (q, k, v) = _attention_by_hand(blk.attn, blk.norm1(x))
    y = x + blk.ls1(attn_out)
    mlp = F.gelu(F.linear(blk.norm2(y), blk.mlp.fc1.weight, blk.mlp.fc1.bias))
    out = y + blk.ls2(F.linear(mlp, blk.mlp.fc2.weight, blk.mlp.fc2.bias))
    for name, want in (("mlp", mlp), ("q", q), ("k", k), ("v", v), ("out", out)):
        torch.testing.assert_close(got[f"block{layer}.{name}"], want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("key", list(ALL))
def test_site_infos_match_captured_shapes(models, key):
    model = models[key]
    info = model.info
    got = model.capture(_images(), list(info.sites), stop_early=False)
    expected_prefix = {"vit": 1, "deit_distilled": 2, "registers": 5, "gap_registers": 4}[key]
    for name, site in info.sites.items():
        assert site.prefix_tokens == expected_prefix
        assert site.grid == (4, 4)
        assert got[name].shape == (2, expected_prefix + 16, site.n_features)
    assert info.sites["block0.mlp"].n_features == 4 * 32
    assert info.depth == 3 and info.num_classes == 10
    assert info.has_cls_token == (key != "gap_registers")


@pytest.mark.parametrize("key", list(ALL))
def test_vit_parts_reproduce_forward(models, key):
    model, x = models[key], _images()
    parts = model.vit
    assert parts.depth == 3
    assert parts.num_prefix_tokens == {"vit": 1, "deit_distilled": 2, "registers": 5,
                                       "gap_registers": 4}[key]
    assert parts.cls_index == (None if key == "gap_registers" else 0)
    tokens = parts.embed(x)
    halves = parts.run_blocks(parts.run_blocks(tokens, 0, 2), 2, 3)
    assert torch.equal(parts.pool_head(parts.run_blocks(tokens, 0, 3)), model(x))
    assert torch.equal(parts.pool_head(halves), model(x))


def test_token_head_on_cls_equals_pooled_head(models):
    for key in ("vit", "registers", "deit_distilled"):
        model, x = models[key], _images()
        parts = model.vit
        tokens = parts.run_blocks(parts.embed(x), 0, parts.depth)
        per_token = parts.token_head(tokens)
        assert per_token.shape == (2, tokens.shape[1], 10)
        if key == "deit_distilled":  # both heads on each token, averaged; pooled: CLS and DIST
            net = model.net
            t = net.norm(tokens)
            want = (net.head(t[:, 0]) + net.head_dist(t[:, 1])) / 2
            torch.testing.assert_close(parts.pool_head(tokens), want)
        else:
            torch.testing.assert_close(per_token[:, 0], model(x), atol=1e-6, rtol=1e-5)


def test_run_blocks_rejects_bad_range(models):
    parts = models["vit"].vit
    with pytest.raises(ValueError):
        parts.run_blocks(parts.embed(_images()), 2, 4)


@pytest.mark.parametrize("site", ["block0.mlp", "block1.q", "block2.out"])
def test_truncated_forward_equals_full_forward(models, site):
    model, x = models["registers"], _images()
    early = model.capture(x, [site, "block0.out"], stop_early=True)
    full = model.capture(x, [site, "block0.out"], stop_early=False)
    for name in early:
        assert torch.equal(early[name], full[name])


def test_truncated_forward_stops_after_deepest_block(models):
    model = models["vit"]
    ran = []
    handles = [blk.register_forward_hook(lambda m, i, o, n=n: ran.append(n))
               for n, blk in enumerate(model.net.blocks)]
    head_calls = []
    handles.append(model.net.head.register_forward_hook(lambda *a: head_calls.append(1)))
    try:
        model.capture(_images(), ["block0.mlp"])
        assert ran == [] and head_calls == []  # stopped inside block 0, before its end
        model.capture(_images(), ["block1.out", "block0.q"])
        assert ran == [0, 1] and head_calls == []
        ran.clear()
        model.capture(_images(), ["block0.out"], stop_early=False)
        assert ran == [0, 1, 2] and head_calls == [1]
    finally:
        for h in handles:
            h.remove()


def test_captured_activations_carry_gradients(models):
    model = models["vit"]
    x = _images().requires_grad_(True)
    act = model.capture(x, ["block1.mlp"])["block1.mlp"]
    act[:, 1:, 3].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.net.parameters())  # eval model is frozen


def test_unknown_site_is_a_model_error(models):
    from runner.errors import ModelError

    with pytest.raises(ModelError, match="block7.mlp"):
        models["vit"].capture(_images(), ["block7.mlp"])


def test_wrapper_equals_timm_preprocessing_and_forward(models):
    from timm.data import create_transform, resolve_data_config

    model = models["deit_distilled"]
    config = resolve_data_config({}, model=model.net)
    config["input_size"] = (3, 32, 32)
    library = create_transform(**config)
    pre = model.preprocess
    assert pre == Preprocess(size=32, crop_pct=config["crop_pct"],
                             interpolation=config["interpolation"],
                             mean=tuple(config["mean"]), std=tuple(config["std"]))
    rng = torch.Generator().manual_seed(1)
    pixels = (torch.rand(45, 61, 3, generator=rng) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    x01 = pixel_transform(pre)(image).unsqueeze(0)
    assert x01.shape == (1, 3, 32, 32) and x01.min() >= 0 and x01.max() <= 1
    assert torch.equal(model(x01), model.net(library(image).unsqueeze(0)))


def test_preprocess_overrides_change_normalization():
    spec = type(VIT).model_validate({**VIT.model_dump(), "preprocess": {
        "mean": (0.1, 0.2, 0.3), "std": (1, 2, 4), "crop_pct": 1.0, "interpolation": "bilinear"}})
    model = load_model(spec)
    assert model.preprocess == Preprocess(32, 1.0, "bilinear", (0.1, 0.2, 0.3), (1.0, 2.0, 4.0))
    x = _images()
    want = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([1.0, 2, 4]).view(
        1, 3, 1, 1)
    assert torch.equal(model(x), model.net(want))
    assert inspect_model(spec).preprocess == model.preprocess


def test_random_init_is_deterministic():
    a, b = load_model(VIT), load_model(VIT)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
