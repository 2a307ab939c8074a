"""open_clip ViTs: QuickGELU mlp site, q/k/v from the packed projection, ViTParts, the wrapper
against open_clip's own preprocessing, and the zero-shot head."""

import pytest
import torch
import torch.nn.functional as F
from models_tiny import CLIP
from PIL import Image

from runner.models import load_model, model_identity, pixel_transform
from runner.models.structure import seeded
from runner.schema import ModelSpec


@pytest.fixture(scope="module")
def model():
    return load_model(CLIP)


def _images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_sites_equal_hand_computation(model):
    visual, x01 = model.net, _images()
    got = model.capture(x01, ["block1.mlp", "block1.q", "block1.k", "block1.v", "block1.out"])
    pre = model.preprocess
    x = (x01 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    x = visual.conv1(x).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(2, 1, -1), x], dim=1)
    x = visual.ln_pre(x + visual.positional_embedding)
    x = visual.transformer.resblocks[0](x)
    blk = visual.transformer.resblocks[1]
    z = blk.ln_1(x)
    q, k, v = F.linear(z, blk.attn.in_proj_weight, blk.attn.in_proj_bias).chunk(3, dim=-1)
    y = x + blk.attn(z, z, z, need_weights=False)[0]
    h = F.linear(blk.ln_2(y), blk.mlp.c_fc.weight, blk.mlp.c_fc.bias)
    mlp = h * torch.sigmoid(1.702 * h)  # QuickGELU, as OpenAI trained CLIP
    out = y + F.linear(mlp, blk.mlp.c_proj.weight, blk.mlp.c_proj.bias)
    for name, want in (("mlp", mlp), ("q", q), ("k", k), ("v", v), ("out", out)):
        torch.testing.assert_close(got[f"block1.{name}"], want, atol=1e-5, rtol=1e-4)


def test_site_infos(model):
    info = model.info
    assert info.depth == 2 and info.has_cls_token and info.num_classes == 16  # embedding width
    site = info.sites["block0.mlp"]
    assert (site.prefix_tokens, site.grid, site.n_features) == (1, (4, 4), 128)
    assert info.sites["block1.v"].n_features == 32


def test_vit_parts_and_truncation(model):
    x = _images()
    parts = model.vit
    assert (parts.depth, parts.num_prefix_tokens, parts.cls_index) == (2, 1, 0)
    tokens = parts.run_blocks(parts.embed(x), 0, 2)
    assert torch.equal(parts.pool_head(tokens), model(x))
    per_token = parts.token_head(tokens)
    torch.testing.assert_close(per_token[:, 0], model(x))
    early = model.capture(x, ["block0.q"])
    full = model.capture(x, ["block0.q"], stop_early=False)
    assert torch.equal(early["block0.q"], full["block0.q"])


def test_wrapper_equals_open_clip_preprocess_and_encode_image():
    import open_clip

    clip, _, preprocess = open_clip.create_model_and_transforms(
        CLIP.name, pretrained=None, **CLIP.kwargs)
    model = load_model(CLIP)
    clip.visual.load_state_dict(model.net.state_dict())
    clip.eval()
    image = Image.fromarray((torch.rand(40, 57, 3) * 255).to(torch.uint8).numpy())
    x01 = pixel_transform(model.preprocess)(image).unsqueeze(0)
    with torch.no_grad():
        want = clip.encode_image(preprocess(image).unsqueeze(0))
    assert torch.equal(model(x01), want)


def test_zero_shot_head(tmp_path, monkeypatch):
    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "names.txt").write_text("cat\ndog\nboat\n")
    spec = ModelSpec.model_validate({**CLIP.model_dump(), "zero_shot": {
        "classnames": "names.txt", "templates": "simple"}})
    model = load_model(spec, base_dir=tmp_path)
    assert model.info.num_classes == 3
    x = _images()
    logits = model(x)
    assert logits.shape == (2, 3)
    # by hand: scaled cosine similarity to the mean normalized prompt embedding of each class
    import open_clip
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    with seeded():  # the same random text tower load_model built
        clip = open_clip.create_model(CLIP.name, pretrained=None, **CLIP.kwargs).eval()
    tokenizer = open_clip.get_tokenizer(CLIP.name)
    with torch.no_grad():
        classes = []
        for name in ("cat", "dog", "boat"):
            e = clip.encode_text(tokenizer([t(name) for t in SIMPLE_IMAGENET_TEMPLATES]),
                                 normalize=True).mean(0)
            classes.append(e / e.norm())
        image = F.normalize(clip.encode_image(model.normalize(x)), dim=-1)
        want = clip.logit_scale.exp() * image @ torch.stack(classes).T
    torch.testing.assert_close(logits, want, atol=1e-4, rtol=1e-4)
    # the class matrix is cached: a second load reads it instead of running the text tower
    assert len(list((tmp_path / "cache" / "zero_shot").glob("*.pt"))) == 1
    monkeypatch.setattr(open_clip, "build_zero_shot_classifier", None)
    assert torch.equal(load_model(spec, base_dir=tmp_path)(x), logits)
    assert '"zero_shot"' in model_identity(spec, tmp_path)
    (tmp_path / "names.txt").write_text("cat\ndog\nship\n")
    assert model_identity(spec, tmp_path) != model.model_id
