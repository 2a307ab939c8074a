"""lowpass against filters built with numpy's FFT on the model-sized inputs."""

import numpy as np
import pytest
import torch
from eval_helpers import accuracy, artifact, context, metric, model_inputs, synthetic_val, tiny_vit

from runner.kinds.lowpass import KIND
from runner.results.correctness import Correctness


def numpy_filtered(x: torch.Tensor, keep) -> torch.Tensor:
    """Images filtered by the transfer function ``keep(radius in cycles per image)``."""
    h, w = x.shape[-2:]
    fy, fx = np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w
    radius = np.hypot(fy[:, None], fx[None, :])
    out = np.fft.ifft2(np.fft.fft2(x.double().numpy()) * keep(radius)).real
    return torch.from_numpy(out).float()


def test_lowpass_and_highpass_match_numpy():
    # 4 classes, as the world has: a random model then has a natural accuracy above 0, so
    # the normalized metrics are defined (they are left out when the reference is 0).
    model, dataset = tiny_vit(num_classes=4), synthetic_val()
    ctx = context("lowpass", model, dataset, radii=[100, 2, 6, 2], highpass=True)
    KIND.run(ctx)

    x, labels = model_inputs(model, dataset)
    with torch.no_grad():
        natural = model(x)
        filtered = {(variant, r): model(numpy_filtered(x, keep))
                    for r in (2.0, 6.0, 100.0)  # sorted, deduplicated; 100 is past the corner
                    for variant, keep in (("lowpass", lambda f, r=r: f <= r),
                                          ("highpass", lambda f, r=r: f > r))}
    for k in (1, 5):
        reference = accuracy(natural, labels, k)
        assert metric(ctx, f"top{k}", variant="natural") == reference
        for (variant, r), logits in filtered.items():
            expected = accuracy(logits, labels, k)
            assert metric(ctx, f"top{k}", variant=variant, x=r) == expected
            assert metric(ctx, f"top{k}_norm", variant=variant, x=r) == pytest.approx(
                100 * expected / reference)
    assert metric(ctx, "top1", variant="lowpass", x=100.0) == accuracy(natural, labels, 1)
    assert (filtered["lowpass", 2.0] - natural).abs().max() > 1e-3  # the filter does something
    assert metric(ctx, "n_images") == len(dataset)

    correct = Correctness.from_arrays(artifact(ctx, "correct"))
    assert correct.index.tolist() == list(range(len(dataset)))
    stored = {(key.variant, key.k, key.x) for key in correct.hits}
    assert {("natural", 1, None), ("lowpass", 1, 2.0), ("highpass", 5, 6.0),
            ("lowpass", 5, 100.0)} <= stored
    assert len(stored) == 2 * (1 + 2 * 3)  # natural and 2 filters x 3 radii, top-1 and top-5
    lowpass_6 = correct.hits[correct.find("lowpass", 5, 6.0)]
    assert 100 * lowpass_6.mean() == metric(ctx, "top5", variant="lowpass", x=6.0)


def test_gaussian_sweep_names_and_values():
    model, dataset = tiny_vit(), synthetic_val()
    ctx = context("lowpass", model, dataset, radii=[3], filter="gaussian", highpass=True,
                  normalize=False)
    KIND.run(ctx)
    x, labels = model_inputs(model, dataset)
    gauss = lambda f: np.exp(-(f**2) / (2 * 3.0**2))  # noqa: E731
    with torch.no_grad():
        low = model(numpy_filtered(x, gauss))
        high = model(numpy_filtered(x, lambda f: 1 - gauss(f)))
    assert metric(ctx, "top5", variant="gaussian", x=3.0) == accuracy(low, labels, 5)
    assert metric(ctx, "top5", variant="gaussian_highpass", x=3.0) == accuracy(high, labels, 5)
    assert not [m for m in ctx.result.metrics if m.name.endswith("_norm")]


def test_lowpass_params():
    params = KIND.Params()
    assert params.radii == (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 112.0)
    assert (params.filter, params.highpass, params.normalize) == ("ideal", False, True)
    assert KIND.Params(radii=[8, 2, 8]).radii == (2.0, 8.0)
    for bad in ([], [-1], [2, "x"]):
        with pytest.raises(ValueError):
            KIND.Params(radii=bad)
    with pytest.raises(ValueError):
        KIND.Params(filter="butterworth")


def test_undefined_normalization_is_counted_and_logged_once_per_metric():
    import copy

    model = copy.deepcopy(tiny_vit())  # 10 classes; the world's labels are 0..3
    with torch.no_grad():
        model.net.head.bias[4:] = 1e3  # classes 4..9 fill the top 5: every accuracy is 0
    ctx = context("lowpass", model, synthetic_val(), radii=[2, 6, 12], highpass=True)
    lines = []
    ctx.log = lines.append
    KIND.run(ctx)
    assert metric(ctx, "top5", variant="natural") == 0.0
    assert not [m for m in ctx.result.metrics if m.name.endswith("_norm")]
    assert ctx.result.info["normalization_undefined"] == 2 * 3 * 2  # variants x radii x k
    assert sorted(lines) == [f"lowpass: top{k}_norm left out, reference accuracy is 0 (counted "
                             "in the task's info as normalization_undefined)" for k in (1, 5)]
