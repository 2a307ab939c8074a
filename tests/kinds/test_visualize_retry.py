"""visualize catches failed optimizations (issue #13.5) and retries them: a planted gate that
is shut (gradient exactly 0) for every image an optimization from noise can reach fails its
first attempt and another seed by construction, and is rescued by starting from its best
dataset image; a gate that never opens is flagged, its image still stored."""

from vis_helpers import (
    GATED,
    NEVER,
    RED,
    MemoryDataset,
    artifacts,
    colour_images,
    context,
    gated_vit,
    metrics,
    solid,
)

from runner.kinds.visualize import KIND
from runner.kinds.visualize.run import (
    FeatureJob,
    Optimizer,
    Recipe,
    Retry,
    fallback,
    visualize,
)
from runner.ops.augment import AugmentSettings

#: Jitter only: colour shift and noise could paint a copy red enough to open the gate.
NO_COLOUR = {"color_mean": 0.0, "color_std": 0.0, "noise": "none"}


def _value(ctx, name, feature, layer=0):
    (row,) = metrics(ctx, name, layer=layer, feature=feature, variant=None)
    return row.value


def test_failure_rule_floor_and_fraction_of_the_natural_maximum():
    retry = Retry(retries=2, floor=0.0, fraction=0.25)
    assert retry.failed(-0.0, None) and retry.failed(0.0, 5.0) and retry.failed(float("nan"), None)
    assert not retry.failed(0.01, None)  # without a dataset only the floor counts
    assert retry.failed(1.0, 5.0) and not retry.failed(1.5, 5.0)  # 1 < 0.25 x 5 <= 1.5
    assert not retry.failed(0.3, -1.0)  # no dataset image activates it: only the floor
    assert Retry(floor=0.5).failed(0.4, None)


def test_fallback_is_another_seed_then_another_initialization():
    assert [fallback(a, "pixel", True) for a in (1, 2, 3, 4, 5)] == [
        ("pixel", False), ("pixel", False), ("pixel", True), ("fft", False), ("fft", False)]
    assert [fallback(a, "pixel", False) for a in (2, 3, 4)] == [
        ("pixel", False), ("fft", False), ("fft", False)]
    assert fallback(3, "fft_decorrelated", False) == ("pixel", False)


def test_a_shut_gate_is_rescued_from_its_best_dataset_image_and_a_dead_one_flagged(tmp_path):
    model = gated_vit()
    data = MemoryDataset(colour_images(6) + [solid([1.0, 0.1, 0.1])])
    params = KIND.Params(layers=[0], features=[RED, GATED, NEVER], steps=30, top_images=2,
                         panels=False, **NO_COLOUR)
    ctx = context(tmp_path, "visualize", params, model, data, batch_size=32)
    KIND.run(ctx)
    assert _value(ctx, "attempts", RED) == 1 and _value(ctx, "optimization_failed", RED) == 0
    # GATED: the first try and another seed start from noise, where its gradient is 0
    assert _value(ctx, "attempts", GATED) == 3
    assert _value(ctx, "optimization_failed", GATED) == 0
    natural = _value(ctx, "natural_max", GATED)
    assert natural > 1.0  # the red dataset image opens it
    assert _value(ctx, "activation", GATED) > natural + 0.5  # and the retry went beyond it
    assert _value(ctx, "naturalness", GATED) > 1.0
    # NEVER: no image opens it; every attempt fails, it is flagged, its image still stored
    assert _value(ctx, "attempts", NEVER) == 3
    assert _value(ctx, "optimization_failed", NEVER) == 1
    assert _value(ctx, "activation", NEVER) <= 0
    assert metrics(ctx, "naturalness", layer=0, feature=NEVER) == []  # natural_max <= 0
    assert sorted(a.feature for a in artifacts(ctx, "image")) == [RED, GATED, NEVER]
    assert ctx.result.info["optimizations_retried"] == 2
    assert ctx.result.info["optimizations_failed"] == 1
    # ranking pass, then 30 steps of 1 batch, then 2 rounds of 30 steps for the 2 failures
    assert ctx.progress.done == ctx.progress.total == len(data) + 3 * 30


def test_without_retries_the_failure_is_only_flagged(tmp_path):
    model = gated_vit()
    data = MemoryDataset(colour_images(4) + [solid([1.0, 0.1, 0.1])])
    params = KIND.Params(layers=[0], features=[GATED], steps=5, retries=0, panels=False,
                         **NO_COLOUR)
    ctx = context(tmp_path, "visualize", params, model, data)
    KIND.run(ctx)
    assert _value(ctx, "attempts", GATED) == 1
    assert _value(ctx, "optimization_failed", GATED) == 1
    assert ctx.result.info["optimizations_failed"] == 1


def test_retries_are_batched_and_keep_the_best_failed_image():
    model = gated_vit()
    site = model.info.sites["block0.mlp"]
    jobs = [FeatureJob(site, GATED), FeatureJob(site, NEVER), FeatureJob(site, RED)]
    recipe = Recipe(steps=4, augment=AugmentSettings(color_mean=0, color_std=0, noise="none"))
    calls = []

    class Counting(Optimizer):
        def run(self, group, **kwargs):
            calls.append((sorted(j.feature for j in group), kwargs.get("attempt", 1),
                          (kwargs.get("recipe") or self.recipe).parameterization))
            return super().run(group, **kwargs)

    out = visualize(Counting(model, recipe, seed=0, batch=8), jobs, Retry(retries=2))
    # no dataset: attempt 2 another seed, attempt 3 the Fourier parameterization, each one
    # batch holding both failures
    assert calls == [([RED, GATED, NEVER], 1, "pixel"), ([GATED, NEVER], 2, "pixel"),
                     ([GATED, NEVER], 3, "fft")]
    assert [r.job.feature for r in out] == [GATED, NEVER, RED]
    assert [r.attempts for r in out] == [3, 3, 1]
    assert [r.failed for r in out] == [True, True, False]
    assert all(r.image.shape == (3, 32, 32) for r in out)
    assert out[2].activation > 0 and out[0].activation == 0 and out[1].activation <= 0
