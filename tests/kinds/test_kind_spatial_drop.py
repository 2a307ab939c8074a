"""spatial_drop: on a model whose feature sees only its own patch, the curves are exactly the
share of active patches left, which the test computes by hand."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from vis_helpers import RED, MemoryDataset, colour_images, context, metrics, planted_vit

from runner.kinds.spatial_drop import KIND
from runner.ops.patches import drop_count, linearity_r2

PERCENTS = [0.0, 10.0, 25.0, 50.0, 90.0, 100.0]


def red_columns(columns: int) -> torch.Tensor:
    """A grey 32 x 32 image whose first ``columns`` patch columns (8 px each) are pure red."""
    x = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    x[:, :, : 8 * columns] = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    return x


def expected_ratio(actives: list[int], percent: float) -> float:
    """Mean over images of the share of active patches left after dropping ``percent`` %."""
    n = torch.tensor(actives, dtype=torch.float64)
    return float(((n - drop_count(n, percent)) / n).double().mean())


def test_curves_are_the_share_of_active_patches_left(tmp_path):
    data = MemoryDataset([red_columns(c) for c in (1, 4, 2, 3)] + colour_images(3))
    params = KIND.Params(layers=[0, 1], features=[RED], images=3, seeds=2, percents=PERCENTS)
    ctx = context(tmp_path, "spatial_drop", params, planted_vit(), data, batch_size=8)
    KIND.run(ctx)
    actives = [16, 12, 8]  # the three reddest images: 4, 3 and 2 red columns of 4 patches
    # red patches activate (almost: resizing blurs the red edge a little) equally
    for name, tolerance in (("count_ratio", 1e-9), ("sum_ratio", 1e-3)):
        curve = metrics(ctx, name, layer=0, feature=RED)
        assert [m.x for m in curve] == PERCENTS
        assert [m.value for m in curve] == pytest.approx(
            [expected_ratio(actives, p) for p in PERCENTS], abs=tolerance)
        layer_mean = metrics(ctx, name, layer=0, variant="layer_mean")
        assert [m.value for m in layer_mean] == pytest.approx([m.value for m in curve])
    expected_r2 = linearity_r2(torch.tensor(PERCENTS),
                               torch.tensor([expected_ratio(actives, p) for p in PERCENTS]))
    for variant, tolerance in (("count", 1e-9), ("sum", 1e-3)):
        (r2,) = metrics(ctx, "linearity_r2", layer=0, variant=variant)
        assert r2.value == pytest.approx(expected_r2, abs=tolerance) and r2.value > 0.99
    # block 1's features are all GELU(0) = 0 < 0.5: no active patch, no curve, counted
    assert not [m for m in ctx.result.metrics if m.layer == 1]
    assert ctx.result.info["images_without_active_patches"] == 3


def test_top_feature_selection_finds_the_planted_feature(tmp_path):
    data = MemoryDataset([red_columns(c) for c in (1, 2)] + colour_images(2))
    params = KIND.Params(layers=[0], features={"top": 1}, images=2, seeds=1,
                         percents=[0.0, 50.0, 100.0])
    ctx = context(tmp_path, "spatial_drop", params, planted_vit(), data)
    KIND.run(ctx)
    assert {m.feature for m in metrics(ctx, "count_ratio", layer=0, variant=None)} == {RED}
    values = [m.value for m in metrics(ctx, "count_ratio", layer=0, feature=RED)]
    assert values == pytest.approx([1.0, expected_ratio([8, 4], 50.0), 0.0])


def test_percents_must_be_percentages():
    with pytest.raises(ValidationError, match="percents"):
        KIND.Params(percents=[0, 150])
    assert KIND.Params().percents == [float(x) for x in np.arange(0, 101, 10)]


def test_bf16_runs_the_drop_forwards_at_bf16_and_keeps_the_counts(tmp_path, monkeypatch):
    from runner.kinds.spatial_drop import run as spatial_run

    entered = []
    real_scope = spatial_run.precision_scope

    def recording_scope(device, precision="fp32"):
        entered.append(precision)
        return real_scope(device, precision)

    monkeypatch.setattr(spatial_run, "precision_scope", recording_scope)
    data = MemoryDataset([red_columns(c) for c in (1, 4, 2, 3)] + colour_images(3))
    params = KIND.Params(layers=[0], features=[RED], images=3, seeds=1, percents=PERCENTS)
    ctx = context(tmp_path, "spatial_drop", params, planted_vit(), data, batch_size=8)
    ctx.precision = "bf16"
    KIND.run(ctx)
    assert entered and set(entered) == {"bf16"}  # every drop forward ran under bf16
    actives = [16, 12, 8]  # the counts are thresholds on clearly separated activations
    curve = metrics(ctx, "count_ratio", layer=0, feature=RED)
    assert [m.value for m in curve] == pytest.approx(
        [expected_ratio(actives, p) for p in PERCENTS], abs=1e-9)
