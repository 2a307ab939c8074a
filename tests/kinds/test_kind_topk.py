"""topk: the streaming ranking equals a brute-force ranking; maps are the hooked activations
reshaped; the task writes what docs/results.md says."""

import io

import numpy as np
import pytest
import torch
from vis_helpers import (
    RED,
    MemoryDataset,
    artifacts,
    colour_images,
    context,
    metrics,
    planted_vit,
    random_vit,
    solid,
)

from runner.errors import PlanError
from runner.kinds.fusion import NATURAL
from runner.kinds.ranking import RankingEvaluator
from runner.kinds.sites import resolve_sites
from runner.kinds.topk import KIND
from runner.models.readouts import Activations
from runner.ops.pixels import model_batch, to_unit


def _inputs(model, images):
    pre = model.preprocess
    return model_batch([to_unit(im) for im in images], pre.size, pre.crop_pct, pre.interpolation)


def _brute_force(model, images, layer, score="mean"):
    """(scores (N, C), patch activations (N, P, C)) of every image, all at once."""
    s = model.info.sites[f"block{layer}.mlp"]
    with torch.no_grad():
        acts = model.capture(_inputs(model, images), [s.name])[s.name][:, s.prefix_tokens:]
    scores = acts.mean(1) if score == "mean" else acts.amax(1)
    return scores.numpy(), acts.numpy()


def _drive(evaluator, model, dataset, batch_size=5):
    """The fused loop's contract, by hand: natural batches in, readouts of the requests out."""
    (wanted,) = evaluator.requests().values()
    for batch in dataset.batches(batch_size):
        with torch.no_grad():
            acts = model.capture(_inputs(model, batch.images), [w.site for w in wanted])
        evaluator.update(NATURAL, {Activations(k): v for k, v in acts.items()}, batch.labels,
                         batch.indices)
        evaluator.batch_done(batch)
    evaluator.finish()
    return evaluator.rankings


def _dataset():
    return MemoryDataset(colour_images(14) + [solid([0.9, 0.1, 0.1])])


@pytest.mark.parametrize("score", ["mean", "max"])
def test_streaming_ranking_equals_brute_force(score):
    model, data = random_vit(), _dataset()
    sites = resolve_sites(model.info, "all", "mlp")
    features = {0: list(range(128)), 1: [3, RED, 77]}
    rankings = _drive(RankingEvaluator("t", sites, features, k=4, score=score), model, data)
    for layer in (0, 1):
        scores, acts = _brute_force(model, data.images, layer, score)
        r = rankings[layer]
        assert r.features == features[layer]
        cols = scores[:, r.features]  # (N, F)
        expected = np.argsort(-cols, axis=0, kind="stable")[:4].T
        assert np.allclose(r.values.numpy(), np.take_along_axis(cols.T, expected, 1), atol=1e-5)
        assert np.array_equal(r.indices.numpy(), expected)
        gh, gw = r.site.grid
        for row, feature in enumerate(r.features):
            for rank, index in enumerate(r.indices[row].tolist()):
                amap = acts[index, :, feature].reshape(gh, gw)
                assert np.allclose(r.maps[row, rank].numpy(), amap, atol=1e-5)


def test_top_features_rule_is_the_mean_of_the_topk_scores():
    model, data = random_vit(), _dataset()
    sites = resolve_sites(model.info, [0], "mlp")
    r = _drive(RankingEvaluator("t", sites, {0: list(range(128))}, k=3), model, data)[0]
    means = r.values.mean(1).numpy()
    assert r.top_features(2) == list(np.argsort(-means, kind="stable")[:2])
    picked = r.select([5, RED])
    assert picked.features == [5, RED]
    assert torch.equal(picked.indices[1], r.indices[RED])


def test_run_writes_npz_metrics_maps_and_overlays(tmp_path):
    model, data = random_vit(), _dataset()
    params = KIND.Params(layers=[0], features={"start": 0, "stop": 6}, k=3, render=2)
    ctx = context(tmp_path, "topk", params, model, data, batch_size=4)
    KIND.run(ctx)
    (npz,) = artifacts(ctx, "topk")
    assert npz.layer == 0 and npz.path.endswith(".npz")
    stored = np.load(io.BytesIO(ctx.sink.path(npz.path).read_bytes()))
    assert stored["features"].tolist() == list(range(6))
    assert stored["indices"].shape == stored["values"].shape == (6, 3)
    assert stored["maps"].shape == (6, 3, 4, 4)
    scores, acts = _brute_force(model, data.images, 0)
    assert np.array_equal(stored["indices"], np.argsort(-scores[:, :6], axis=0)[:3].T)
    rows = metrics(ctx, "topk_value", layer=0)
    assert len(rows) == 6 * 3
    (best,) = metrics(ctx, "topk_value", layer=0, feature=4, position=0)
    assert best.value == pytest.approx(float(scores[:, 4].max()), abs=1e-5)
    maps = artifacts(ctx, "activation_map")
    overlays = artifacts(ctx, "overlay")
    assert sorted((a.feature, a.rank) for a in maps) == [(f, r) for f in (0, 1) for r in range(3)]
    assert len(overlays) == 6 and all(a.path.endswith(".png") for a in overlays)
    first = next(a for a in maps if a.feature == 1 and a.rank == 2)
    amap = np.load(ctx.sink.path(first.path))
    assert np.allclose(amap, acts[stored["indices"][1, 2], :, 1].reshape(4, 4), atol=1e-5)


def test_unreadable_images_are_skipped_not_fatal(tmp_path):
    model = planted_vit()
    data = MemoryDataset(colour_images(5) + [None] + [solid([1.0, 0.0, 0.0])])
    params = KIND.Params(layers=[0], features=[RED], k=2, render=1)
    ctx = context(tmp_path, "topk", params, model, data, batch_size=3)
    KIND.run(ctx)
    (best,) = metrics(ctx, "topk_value", layer=0, feature=RED, position=0)
    stored = np.load(ctx.sink.path(artifacts(ctx, "topk")[0].path))
    assert stored["indices"][0, 0] == 6 and best.value > 3.0


def test_check_validates_sites_and_features():
    info = planted_vit().info
    KIND.check(KIND.Params(), info)
    with pytest.raises(PlanError, match="feature 200"):
        KIND.check(KIND.Params(features=[1, 200]), info)
    with pytest.raises(PlanError, match="block"):
        KIND.check(KIND.Params(layers=[5]), info)
    assert KIND.fusable
