"""Patch-token scores, activation maps and the streaming top-k against brute force."""

import numpy as np
import pytest
import torch

from runner.ops.activation import (
    TopK,
    activation_maps,
    linear_features,
    patch_mean,
    patch_score,
    patch_values,
    patch_view,
    pick_features,
)


def test_patch_view_drops_prefix_tokens_and_flattens_cnn_maps():
    acts = torch.randn(2, 1 + 6, 4)
    assert torch.equal(patch_view(acts, 1), acts[:, 1:])
    cnn = torch.randn(2, 4, 2, 3)
    flat = patch_view(cnn, 0, tokens=False)
    assert flat.shape == (2, 6, 4) and flat[1, 4, 2] == cnn[1, 2, 1, 1]


def test_patch_scores_and_objective_match_numpy():
    acts = np.random.default_rng(0).normal(size=(3, 2 + 9, 5)).astype(np.float32)
    patches = patch_view(torch.from_numpy(acts), 2)
    assert np.allclose(patch_score(patches, "mean").numpy(), acts[:, 2:].mean(axis=1))
    assert np.allclose(patch_score(patches, "max").numpy(), acts[:, 2:].max(axis=1))
    features = torch.tensor([4, 0, 4])
    objective = patch_mean(pick_features(torch.from_numpy(acts), features), 2).numpy()
    assert np.allclose(objective, [acts[0, 2:, 4].mean(), acts[1, 2:, 0].mean(),
                                   acts[2, 2:, 4].mean()])
    cnn = acts[:, 2:].reshape(3, 3, 3, 5).transpose(0, 3, 1, 2)  # (B, C, H, W)
    on_cnn = pick_features(torch.from_numpy(cnn.copy()), features, tokens=False)
    assert on_cnn.shape == (3, 3, 3)
    assert np.allclose(patch_values(on_cnn, tokens=False).numpy(),
                       [acts[0, 2:, 4], acts[1, 2:, 0], acts[2, 2:, 4]])
    assert np.allclose(patch_mean(on_cnn, tokens=False).numpy(), objective)


def test_linear_features_are_one_output_of_the_linear_layer_per_row():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)  # (B, T, D)
    weight = rng.normal(size=(6, 4)).astype(np.float32)  # (F, D)
    bias = rng.normal(size=6).astype(np.float32)
    features = [5, 0, 5]
    want = np.stack([x[b] @ weight[f] + bias[f] for b, f in enumerate(features)])  # (B, T)
    got = linear_features(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                          torch.tensor(features))
    assert got.shape == (3, 5) and np.allclose(got.numpy(), want, atol=1e-6)
    no_bias = linear_features(torch.from_numpy(x), torch.from_numpy(weight), None,
                              torch.tensor(features))
    assert np.allclose(no_bias.numpy(), want - bias[features][:, None], atol=1e-6)


def test_activation_maps_are_the_tokens_on_the_grid():
    acts = torch.randn(2, 1 + 2 * 3, 4)
    maps = activation_maps(patch_view(acts, 1), (2, 3), torch.tensor([3, 1]))
    assert maps.shape == (2, 2, 2, 3)
    for b in range(2):
        for j, f in enumerate([3, 1]):
            for r in range(2):
                for c in range(3):
                    assert maps[b, j, r, c] == acts[b, 1 + r * 3 + c, f]
    with pytest.raises(ValueError, match="do not fill"):
        activation_maps(patch_view(acts, 1), (2, 2))


def test_streaming_topk_equals_brute_force_ranking():
    rng = np.random.default_rng(0)
    n, f, npatch, k = 37, 6, 4, 5
    patches = rng.normal(size=(n, npatch, f)).astype(np.float32)
    scores = patches.mean(axis=1)
    top = TopK(f, k, keep_maps=True)
    start = 0
    for size in (1, 8, 3, 16, 9):  # ragged batches, in dataset order
        sl = slice(start, start + size)
        top.update(torch.arange(start, start + size), torch.from_numpy(scores[sl]),
                   torch.from_numpy(patches[sl]))
        start += size
    values, indices, maps = top.result()
    brute = np.argsort(-scores, axis=0)[:k].T  # (F, k)
    assert np.array_equal(indices.numpy(), brute)
    assert np.allclose(values.numpy(), np.take_along_axis(scores.T, brute, axis=1))
    for feat in range(f):
        for r in range(k):
            assert np.allclose(maps[feat, r].numpy(), patches[brute[feat, r], :, feat])


def test_topk_with_fewer_images_than_k():
    top = TopK(2, 4)
    top.update(torch.tensor([10, 11]), torch.tensor([[1.0, 5.0], [2.0, 4.0]]))
    values, indices, maps = top.result()
    assert maps is None
    assert indices.tolist() == [[11, 10], [10, 11]]
    assert values.tolist() == [[2.0, 1.0], [5.0, 4.0]]
