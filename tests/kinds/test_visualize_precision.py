"""visualize at ``--precision bf16``: only the model forwards are autocast; the image
parameters and the objective stay float32, and the planted feature is still found."""

import torch
from vis_helpers import RED, colour_images, planted_vit

from runner.kinds.base import TaskContext
from runner.kinds.visualize.run import FeatureJob, Recipe, optimize_features
from runner.store import MemorySink


def test_bf16_optimizes_float32_images_and_finds_the_planted_feature():
    model = planted_vit()
    job = FeatureJob(model.info.sites["block0.mlp"], RED)
    recipe = Recipe(steps=60, trace_every=20)
    fp32 = optimize_features(model, [job], recipe, seed=0)[0]
    bf16 = optimize_features(model, [job], recipe, seed=0, precision="bf16")[0]
    assert bf16.image.dtype == torch.float32 and bf16.image.shape == fp32.image.shape
    images = torch.stack(colour_images(24)).float() / 255
    with torch.no_grad():
        best_image = model.capture(images, ["block0.mlp"])["block0.mlp"][:, 1:, RED].mean(1).max()
    assert bf16.activation > float(best_image) + 0.2  # beyond every dataset image, as fp32
    assert abs(bf16.activation - fp32.activation) < 0.05 * abs(fp32.activation)
    r, g, b = bf16.image.mean(dim=(1, 2)).tolist()
    assert r > 0.7 and g < 0.3 and b < 0.3


def test_a_kinds_own_forward_runs_at_the_tasks_precision():
    ctx = TaskContext(key="k", kind="visualize", params=None, seed=0, sink=MemorySink())
    linear, x = torch.nn.Linear(4, 2), torch.randn(3, 4)
    with ctx.autocast():
        assert linear(x).dtype == torch.float32  # fp32, the default: nothing changes
    ctx.precision = "bf16"
    with ctx.autocast():
        assert linear(x).dtype == torch.bfloat16
