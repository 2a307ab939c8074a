"""read_features: one channel per row, equal to the hooked site's channel in every family; the
truncated read of a feed-forward site stops before the site's linear layer and computes only
the channels read, and its gradient equals the full forward's."""

import pytest
import torch
from models_tiny import CLIP, CONVIT, DEIT, PIT, RESNET, SWIN, TWINS, VIT, VIT_REG

from runner.models import load_model
from runner.models.base import FeatureRead

FAMILIES = {"vit": VIT, "deit": DEIT, "registers": VIT_REG, "clip": CLIP, "swin": SWIN,
            "pit": PIT, "convit": CONVIT, "twins": TWINS, "resnet": RESNET}
#: families whose feed-forward site is act(Linear(x)) on (B, T, D) tokens (every transformer
#: here, Swin and Twins included): read at the linear layer's input; a CNN has no such site
FAST = set(FAMILIES) - {"resnet"}


@pytest.fixture(scope="module")
def models():
    return {k: load_model(spec).eval() for k, spec in FAMILIES.items()}


def _images(n=4):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _two_sites(model):
    """Two sites of the model (mlp sites where it has them) and two features each."""
    mlp = [s for s in model.info.sites.values() if s.what in ("mlp", "stage")]
    first, last = mlp[0], mlp[-1]
    return [FeatureRead(first.name, slice(0, 2), torch.tensor([3, 1])),
            FeatureRead(last.name, slice(2, 4), torch.tensor([0, last.n_features - 1]))]


@pytest.mark.parametrize("key", list(FAMILIES))
def test_reads_equal_the_hooked_sites_channels(models, key):
    model, x = models[key], _images()
    reads = _two_sites(model)
    acts = model.capture(x, [r.site for r in reads], stop_early=False)
    for truncated in (True, False):
        got = model.read_features(x, reads, truncated=truncated)
        for read, value in zip(reads, got, strict=True):
            site = model.info.sites[read.site]
            full = acts[read.site][read.rows]
            want = torch.stack([full[i, :, f] if site.tokens else full[i, f]
                                for i, f in enumerate(read.features.tolist())])
            assert value.shape == want.shape
            assert torch.allclose(value, want, atol=1e-5, rtol=1e-4), (key, read.site)
    uses_linear = any(model._readers[n].linear for n in model.info.sites)
    assert uses_linear == (key in FAST)


def test_truncated_read_skips_the_linear_layer_and_keeps_gradients(models):
    model = models["vit"]
    calls = []
    handle = model.net.blocks[1].mlp.fc1.register_forward_hook(lambda *a: calls.append(1))
    read = [FeatureRead("block1.mlp", slice(0, 4), torch.tensor([0, 5, 9, 127]))]
    grads = []
    try:
        for truncated in (True, False):
            x = _images().requires_grad_(True)
            (value,) = model.read_features(x, read, truncated=truncated)
            value[:, 1:].mean().backward()
            grads.append(x.grad)
            assert calls == ([] if truncated else [1])
    finally:
        handle.remove()
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)


def test_read_of_an_unknown_site_is_a_model_error(models):
    from runner.errors import ModelError

    with pytest.raises(ModelError, match="block9.mlp"):
        models["vit"].read_features(_images(), [FeatureRead("block9.mlp", slice(0, 4),
                                                            torch.zeros(4, dtype=torch.long))])
