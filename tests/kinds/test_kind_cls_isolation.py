"""CLS isolation and patch heads against timm's own modules, driven by hand."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from eval_helpers import accuracy, artifact, context, metric, model_inputs, synthetic_val, tiny_vit

from runner.errors import PlanError
from runner.kinds.cls_isolation import KIND
from runner.models.readouts import (
    LOGITS,
    MEAN_TOKEN_LOGITS,
    TOKEN_LOGITS,
    IsolatedLogits,
    compute_readouts,
)
from runner.models.tokens import isolated_logits, split_prefix
from runner.results.correctness import Correctness

DEPTH = 3


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    return torch.rand(5, 3, 32, 32)


def by_hand(model, x: torch.Tensor, layer: int) -> torch.Tensor:
    """CLS alone through timm's blocks [0, L), patches alone, then together; head on CLS."""
    net = model.net
    tokens = net._pos_embed(net.patch_embed(model.normalize(x)))
    cls, patches = tokens[:, :1], tokens[:, 1:]
    for block in net.blocks[:layer]:
        cls, patches = block(cls), block(patches)
    joined = torch.cat([cls, patches], dim=1)
    for block in net.blocks[layer:]:
        joined = block(joined)
    return net.head(net.norm(joined)[:, 0])


def test_split_prefix_and_join_are_inverse():
    tokens = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    prefix, patches = split_prefix(tokens, 2)
    assert torch.equal(prefix, tokens[:, :2]) and torch.equal(patches, tokens[:, 2:])
    assert torch.equal(torch.cat([prefix, patches], dim=1), tokens)


def test_isolation_at_layer_zero_is_the_model_exactly(inputs):
    model = tiny_vit()
    vit = model.vit
    with torch.no_grad():
        own = model(inputs)
        assert torch.equal(isolated_logits(vit, vit.embed(inputs), [0])[0], own)
        values, failures = compute_readouts(
            model, inputs, [LOGITS, IsolatedLogits(0), IsolatedLogits(1)])
    assert not failures
    assert torch.equal(values[IsolatedLogits(0)], own) and torch.equal(values[LOGITS], own)


def test_isolation_matches_timm_by_hand_at_every_layer(inputs):
    model = tiny_vit()
    with torch.no_grad():
        values, _ = compute_readouts(model, inputs, [IsolatedLogits(n) for n in range(DEPTH + 1)])
        for layer in range(DEPTH + 1):
            assert torch.allclose(values[IsolatedLogits(layer)], by_hand(model, inputs, layer),
                                  atol=1e-5)
    # L = depth: CLS never sees the image, so every image gets the same logits ...
    last = values[IsolatedLogits(DEPTH)]
    assert (last - last[0]).abs().max() < 1e-6
    # ... which an earlier insertion does not
    assert (values[IsolatedLogits(1)] - values[IsolatedLogits(1)][0]).abs().max() > 1e-4


def test_patch_heads_and_the_mean_token(inputs):
    model = tiny_vit()
    net = model.net
    with torch.no_grad():
        values, _ = compute_readouts(model, inputs, [TOKEN_LOGITS, MEAN_TOKEN_LOGITS])
        final = net.blocks(net._pos_embed(net.patch_embed(model.normalize(inputs))))
        normed = net.norm(final)
        head_on_each = net.head(normed[:, 1:])
        head_on_mean = net.head(normed[:, 1:].mean(dim=1))
    assert values[TOKEN_LOGITS].shape == (5, 16, 10)
    assert torch.allclose(values[TOKEN_LOGITS], head_on_each, atol=1e-6)
    assert torch.allclose(values[TOKEN_LOGITS].mean(dim=1), head_on_mean, atol=1e-6)
    assert torch.allclose(values[MEAN_TOKEN_LOGITS], head_on_mean, atol=1e-6)


def test_cls_isolation_kind_reports_table_1_and_figure_6():
    model, dataset = tiny_vit(), synthetic_val()
    ctx = context("cls_isolation", model, dataset)
    KIND.run(ctx)

    x, labels = model_inputs(model, dataset)
    with torch.no_grad():
        natural = model(x)
        values, _ = compute_readouts(model, x, [TOKEN_LOGITS, MEAN_TOKEN_LOGITS])
        for layer in range(DEPTH + 1):
            isolated_acc = accuracy(by_hand(model, x, layer), labels, 5)
            assert metric(ctx, "top5", variant="isolated", x=layer) == isolated_acc
    for k in (1, 5):
        assert metric(ctx, f"top{k}", variant="natural") == accuracy(natural, labels, k)
        assert metric(ctx, f"top{k}", variant="isolated", x=0) == accuracy(natural, labels, k)
        per_position = [accuracy(values[TOKEN_LOGITS][:, p], labels, k) for p in range(16)]
        for p in range(16):
            assert metric(ctx, f"top{k}", variant="patch", position=p) == per_position[p]
        assert metric(ctx, f"top{k}", variant="patch_average") == pytest.approx(
            np.mean(per_position))
        assert metric(ctx, f"top{k}", variant="patch_maximum") == max(per_position)
        assert metric(ctx, f"top{k}", variant="patch_mean_token") == accuracy(
            values[MEAN_TOKEN_LOGITS], labels, k)
    assert metric(ctx, "n_images") == len(dataset)

    maps = artifact(ctx, "patch_accuracy")
    assert maps.shape == (2, 4, 4) and maps.dtype == np.float32
    assert maps[0, 1, 2] == pytest.approx(metric(ctx, "top1", variant="patch", position=6))
    assert artifact(ctx, "patch_heatmap")[:8] == b"\x89PNG\r\n\x1a\n"
    correct = Correctness.from_arrays(artifact(ctx, "correct"))
    assert correct.index.tolist() == list(range(len(dataset)))
    assert {(key.variant, key.k, key.x) for key in correct.hits} == {
        (variant, k, x) for k in (1, 5)
        for variant, x in [("natural", None), ("patch", None), ("patch_mean_token", None),
                           *(("isolated", float(layer)) for layer in range(DEPTH + 1))]}
    patch1 = correct.hits[correct.find("patch", 1)]
    assert patch1.shape == (len(dataset), 16)
    assert 100 * patch1[:, 6].mean() == metric(ctx, "top1", variant="patch", position=6)
    isolated3 = correct.hits[correct.find("isolated", 1, DEPTH)]
    assert 100 * isolated3.mean() == metric(ctx, "top1", variant="isolated", x=DEPTH)
    for variant in ("natural", "patch_mean_token"):
        hits = correct.hits[correct.find(variant, 5)]
        assert 100 * hits.mean() == metric(ctx, "top5", variant=variant)


def test_chosen_layers_without_patch_heads():
    ctx = context("cls_isolation", tiny_vit(), synthetic_val(), layers=[2], patch_heads=False)
    KIND.run(ctx)
    assert {(m.variant, m.x) for m in ctx.result.metrics if m.name == "top1"} == {
        ("natural", None), ("isolated", 2)}
    assert [a.role for a in ctx.result.artifacts] == ["correct"]
    correct = Correctness.from_arrays(artifact(ctx, "correct"))
    assert {(key.variant, key.k, key.x) for key in correct.hits} == {
        ("natural", 1, None), ("natural", 5, None), ("isolated", 1, 2.0), ("isolated", 5, 2.0)}


def test_plan_time_checks():
    info = tiny_vit().info
    KIND.check(KIND.Params(layers=[0, DEPTH]), info)
    with pytest.raises(PlanError, match="CLS token"):
        KIND.check(KIND.Params(), replace(info, has_cls_token=False))
    with pytest.raises(PlanError, match="depth"):
        KIND.check(KIND.Params(layers=[DEPTH + 1]), info)
    assert KIND.Params(layers=[3, 1, 3]).layers == (1, 3)
    with pytest.raises(ValueError):
        KIND.Params(layers=[-1])


@pytest.mark.parametrize("name", ["deit_tiny_distilled_patch16_224",
                                  "vit_small_patch14_reg4_dinov2"])
def test_isolation_with_extra_prefix_tokens(name, inputs):
    """Distillation / register tokens are isolated with CLS; patch heads skip them."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    kwargs = dict(img_size=32, patch_size=8, depth=2, embed_dim=32, num_heads=2, num_classes=10)
    model = build_untrained(ModelSpec(source="timm", name=name, pretrained=False,
                                      kwargs=kwargs)).eval()
    with torch.no_grad():
        values, failures = compute_readouts(
            model, inputs, [IsolatedLogits(0), IsolatedLogits(2), TOKEN_LOGITS])
        own = model(inputs)
    assert not failures
    assert torch.equal(values[IsolatedLogits(0)], own)
    assert (values[IsolatedLogits(2)] - values[IsolatedLogits(2)][0]).abs().max() < 1e-6
    assert values[TOKEN_LOGITS].shape == (5, 16, 10)  # 4 x 4 patches, prefix tokens left out
