"""How natural a visualization is (issue #14, claim 3): on a planted site, the optimum of a
narrow, fragile pattern beats every dataset image by far and collapses under a 1-px blur, an
8-px shift and JPEG, while a robust colour feature's optimum is about as strong as its best
dataset image and survives all three."""

import numpy as np
import pytest
import torch
from PIL import Image
from vis_helpers import (
    FRAGILE,
    ROBUST,
    MemoryDataset,
    colour_images,
    context,
    fragile_vit,
    fragile_weight,
    solid,
)

from runner.kinds.visualize import KIND
from runner.kinds.visualize.run import (
    FeatureJob,
    Optimized,
    Optimizer,
    perturbations,
    perturbed_activations,
)
from runner.ops.perturb import gaussian_blur

KEPT = ("kept_blur", "kept_shift", "kept_jpeg")


def _values(ctx, feature):
    return {m.name: m.value for m in ctx.result.metrics
            if m.feature == feature and m.variant is None}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    data = MemoryDataset(colour_images(6) + [solid([0.9, 0.15, 0.15])])
    # no jitter: a pattern tied to the patch grid cannot be found under random shifts
    params = KIND.Params(layers=[0], features=[ROBUST, FRAGILE], steps=40, jitter=0,
                         top_images=2, panels=False)
    ctx = context(tmp_path_factory.mktemp("natural"), "visualize", params, fragile_vit(), data)
    KIND.run(ctx)
    return ctx


def test_the_fragile_optimum_is_the_planted_pattern(planted_run):
    (image,) = [a for a in planted_run.result.artifacts if a.feature == FRAGILE]
    with Image.open(planted_run.sink.path(image.path)) as png:
        pixels = torch.from_numpy(np.asarray(png.convert("RGB"), dtype=np.float32) / 255)
    pixels = pixels.permute(2, 0, 1)
    pattern = fragile_weight().repeat(1, 2, 2)
    difference = pixels[0] - pixels[1]
    assert torch.corrcoef(torch.stack([difference.flatten(), pattern[0].flatten()]))[0, 1] > 0.8


def test_fragile_exceeds_natural_images_and_collapses_robust_survives(planted_run):
    fragile, robust = _values(planted_run, FRAGILE), _values(planted_run, ROBUST)
    assert fragile["optimization_failed"] == 0 and robust["optimization_failed"] == 0
    for name in KEPT:
        assert abs(fragile[name]) < 0.1, name
        assert robust[name] > 0.95, name
    assert fragile["naturalness"] > 3.0  # far beyond any dataset image
    assert 0.8 < robust["naturalness"] < 1.5  # about what a red dataset image gives
    for values in (fragile, robust):
        assert values["naturalness"] == pytest.approx(values["activation"] / values["natural_max"])


def test_kept_shares_are_the_activation_on_the_changed_image():
    model = fragile_vit()
    site = model.info.sites["block0.mlp"]
    g = torch.Generator().manual_seed(0)
    results = [Optimized(FeatureJob(site, f), torch.rand((3, 32, 32), generator=g), 1.0)
               for f in (ROBUST, FRAGILE, 5)]
    params = KIND.Params(shift=16)  # a whole patch: the fragile pattern's grid phase is kept
    changed = perturbed_activations(Optimizer(model, None, 0), results, perturbations(params),
                                    images_per_batch=4)
    assert [sorted(c) for c in changed] == [sorted(KEPT)] * 3
    images = torch.stack([r.image for r in results])
    with torch.no_grad():
        blurred = model.capture(gaussian_blur(images), ["block0.mlp"])["block0.mlp"]
    for n, r in enumerate(results):
        expected = blurred[n, 1:, r.job.feature].mean().item()
        assert changed[n]["kept_blur"] == pytest.approx(expected, abs=1e-5)


def test_a_whole_patch_shift_keeps_the_fragile_pattern_half_a_patch_inverts_it():
    model = fragile_vit()
    pattern = fragile_weight().clamp(min=0).repeat(1, 2, 2)  # red where +, green where -
    r = Optimized(FeatureJob(model.info.sites["block0.mlp"], FRAGILE), pattern, 1.0)
    opt = Optimizer(model, None, 0)
    with torch.no_grad():
        plain = model.capture(pattern[None], ["block0.mlp"])["block0.mlp"][0, 1:, FRAGILE].mean()
    half = perturbed_activations(opt, [r], perturbations(KIND.Params()), 8)[0]
    whole = perturbed_activations(opt, [r], perturbations(KIND.Params(shift=16)), 8)[0]
    assert plain.item() > 2.0
    assert half["kept_shift"] < 0.05 * plain.item()
    assert whole["kept_shift"] == pytest.approx(plain.item(), rel=1e-5)
