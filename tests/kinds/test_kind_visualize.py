"""visualize: the planted red feature is found and beaten; batching and early stopping change
nothing; the kind writes what docs/results.md says."""

import pytest
import torch
from vis_helpers import GREEN, RED, artifacts, colour_images, context, metrics, planted_vit

from runner.errors import PlanError
from runner.kinds.visualize import KIND
from runner.kinds.visualize.run import FeatureJob, Recipe, chunks, optimize_features
from runner.ops.augment import AugmentSettings


def _site(model, layer=0):
    return model.info.sites[f"block{layer}.mlp"]


def _dataset_scores(model, feature):
    images = torch.stack(colour_images(24)).float() / 255
    with torch.no_grad():
        acts = model.capture(images, ["block0.mlp"])["block0.mlp"]
    return acts[:, 1:, feature].mean(1)


def test_planted_feature_is_maximized_beyond_every_dataset_image():
    model = planted_vit()
    jobs = [FeatureJob(_site(model), RED), FeatureJob(_site(model), GREEN)]
    red, green = optimize_features(model, jobs, Recipe(steps=60, trace_every=20), seed=0)
    assert red.activation > float(_dataset_scores(model, RED).max()) + 0.2
    assert green.activation > float(_dataset_scores(model, GREEN).max()) + 0.2
    r, g, b = red.image.mean(dim=(1, 2)).tolist()
    assert r > 0.7 and g < 0.3 and b < 0.3  # the image shows the pattern: red
    r, g, b = green.image.mean(dim=(1, 2)).tolist()
    assert g > 0.7 and r < 0.3 and b < 0.3
    assert [s for s, _ in red.trace] == [0, 20, 40, 59]
    assert red.trace[-1][1] > red.trace[0][1]
    assert red.image.shape == (3, 32, 32) and red.image.min() >= 0 and red.image.max() <= 1


def test_a_features_image_does_not_depend_on_its_batch_or_on_early_stopping():
    model = planted_vit()
    recipe = Recipe(steps=6, augment=AugmentSettings(noise="pixel", shared_jitter=False))
    jobs = [FeatureJob(_site(model, 0), 5), FeatureJob(_site(model, 1), 7),
            FeatureJob(_site(model, 0), RED)]
    together = optimize_features(model, jobs, recipe, seed=3)
    alone = optimize_features(model, jobs[2:], recipe, seed=3, truncated=False)[0]
    assert torch.allclose(together[2].image, alone.image, atol=1e-5)
    assert together[2].activation == pytest.approx(alone.activation, rel=1e-5)
    other_seed = optimize_features(model, jobs[2:], recipe, seed=4)[0]
    assert not torch.allclose(other_seed.image, alone.image)


@pytest.mark.parametrize(("parameterization", "margin"), [("fft", 0.3),
                                                          ("fft_decorrelated", 0.05)])
def test_fourier_parameterizations_also_find_the_planted_colour(parameterization, margin):
    model = planted_vit()
    recipe = Recipe(steps=40, parameterization=parameterization, lr=0.2, trace_every=39)
    red = optimize_features(model, [FeatureJob(_site(model), RED)], recipe, seed=0)[0]
    r, g, b = red.image.mean(dim=(1, 2)).tolist()
    assert r > g + margin and r > b + margin
    assert red.trace[-1][1] > red.trace[0][1] + 0.3


def test_run_writes_images_activations_and_traces(tmp_path):
    model = planted_vit()
    params = KIND.Params(layers=[0, -1], features=[RED, 3], steps=4, trace_every=2)
    ctx = context(tmp_path, "visualize", params, model, batch_size=16)
    KIND.run(ctx)
    for layer in (0, 1):
        for feature in (RED, 3):
            (final,) = metrics(ctx, "activation", layer=layer, feature=feature, variant=None)
            trace = metrics(ctx, "activation", layer=layer, feature=feature, variant="trace")
            assert [m.x for m in trace] == [0, 2, 3]
            assert final.value == final.value  # not NaN
    images = artifacts(ctx, "image")
    assert sorted((a.layer, a.feature) for a in images) == [(0, 0), (0, 3), (1, 0), (1, 3)]
    assert all(a.path.endswith(".png") for a in images)
    assert artifacts(ctx, "panel") == []  # no dataset, no panels
    # every feature but (0, RED) is GELU(0) = 0 everywhere: it fails, and its 2 retries run
    # batched (3 features: 2 batches, cut where the layer changes) after the first 2 batches
    for layer, feature in [(0, 3), (1, 0), (1, 3)]:
        assert metrics(ctx, "attempts", layer=layer, feature=feature)[0].value == 3
        assert metrics(ctx, "optimization_failed", layer=layer, feature=feature)[0].value == 1
        assert metrics(ctx, "kept_blur", layer=layer, feature=feature) == []  # nothing to keep
    assert metrics(ctx, "attempts", layer=0, feature=RED)[0].value == 1
    assert metrics(ctx, "optimization_failed", layer=0, feature=RED)[0].value == 0
    assert ctx.progress.done == ctx.progress.total == 2 * 4 + 2 * (2 * 4)
    assert ctx.result.info["optimizations_failed"] == 3


def test_check_rejects_unknown_layers_and_features():
    info = planted_vit().info
    KIND.check(KIND.Params(layers=[0, 1], features={"start": 0, "stop": 128}), info)
    with pytest.raises(PlanError, match="layer 2"):
        KIND.check(KIND.Params(layers=[2]), info)
    with pytest.raises(PlanError, match="128"):
        KIND.check(KIND.Params(features=[128]), info)
    with pytest.raises(PlanError, match="top 500"):
        KIND.check(KIND.Params(features={"top": 500}), info)


def test_top_features_need_a_dataset(tmp_path):
    params = KIND.Params(layers=[0], features={"top": 2}, steps=1)
    with pytest.raises(ValueError, match="dataset"):
        KIND.run(context(tmp_path, "visualize", params, planted_vit()))


def test_top_features_and_figure2_panels_with_a_dataset(tmp_path):
    from PIL import Image
    from vis_helpers import MemoryDataset, solid

    data = MemoryDataset(colour_images(6) + [solid([1.0, 0.1, 0.1]), solid([0.1, 1.0, 0.1])])
    params = KIND.Params(layers=[0], features={"top": 2}, steps=3, top_images=3)
    ctx = context(tmp_path, "visualize", params, planted_vit(), data, batch_size=16)
    KIND.run(ctx)
    assert sorted(a.feature for a in artifacts(ctx, "image")) == [RED, GREEN]
    panels = artifacts(ctx, "panel")
    assert sorted((a.layer, a.feature) for a in panels) == [(0, RED), (0, GREEN)]
    panel = Image.open(ctx.sink.path(panels[0].path))
    assert panel.width == (2 * 32 + 4) + 3 * (4 + 32)  # optimized image + 3 top images
    assert ctx.progress.done == ctx.progress.total == len(data) + 3  # ranking pass + steps


def test_batches_cut_at_layer_changes_once_half_full():
    model = planted_vit()

    def jobs(layers):
        return [FeatureJob(_site(model, layer), f) for f, layer in enumerate(layers)]

    def layers_of(groups):
        return [[j.site.layer for j in g] for g in groups]

    assert layers_of(chunks(jobs([1, 0, 1]), 4)) == [[0, 1, 1]]  # under half: shared
    assert layers_of(chunks(jobs([0, 0, 1, 1, 1]), 4)) == [[0, 0], [1, 1, 1]]  # half: cut
    assert layers_of(chunks(jobs([0] * 5 + [1]), 2)) == [[0, 0], [0, 0], [0], [1]]
    assert layers_of(chunks(jobs([0, 1, 1, 1, 1]), 4)) == [[0, 1, 1, 1], [1]]
