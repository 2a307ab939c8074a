"""Weights: local files, checkpoints, train-task weights, caches, and failing fast offline."""

import time

import pytest
import torch
from models_tiny import VIT

from runner.errors import ModelError
from runner.models import (
    build_untrained,
    check_weights,
    inspect_model,
    load_model,
    model_identity,
)
from runner.models import weights as weights_module
from runner.schema import ModelSpec


def _perturbed_state(spec, seed):
    """A state dict unlike the seeded random init, as a trained model's would be."""
    net = build_untrained(spec).net
    g = torch.Generator().manual_seed(seed)
    return {k: v + torch.randn(v.shape, generator=g) * 0.01 if v.is_floating_point() else v
            for k, v in net.state_dict().items()}


def _assert_state_equal(net, state):
    got = net.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_timm_weights_file_loads_and_changes_identity(tmp_path):
    state = _perturbed_state(VIT, 1)
    torch.save(state, tmp_path / "w.pth")
    spec = ModelSpec.model_validate({**VIT.model_dump(), "weights": "w.pth"})
    model = load_model(spec, base_dir=tmp_path)
    _assert_state_equal(model.net, state)
    first = model.model_id
    torch.save(_perturbed_state(VIT, 2), tmp_path / "w.pth")
    assert model_identity(spec, tmp_path) != first


def test_checkpoint_source_with_wrapped_state_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = _perturbed_state(VIT, 3)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
               tmp_path / "ckpt.pth")
    save_file(state, str(tmp_path / "ckpt.safetensors"))
    for name in ("ckpt.pth", "ckpt.safetensors"):
        spec = ModelSpec(source="checkpoint", arch="vit_tiny_patch16_224", path=name,
                         num_classes=10, kwargs=VIT.kwargs)
        model = load_model(spec, base_dir=tmp_path)
        _assert_state_equal(model.net, state)
        assert model.model_id.startswith("checkpoint:vit_tiny_patch16_224@sha256:")


def test_weights_that_do_not_fit_are_a_model_error(tmp_path):
    torch.save(_perturbed_state(VIT, 1), tmp_path / "w.pth")
    spec = ModelSpec(source="checkpoint", arch="vit_tiny_patch16_224", path="w.pth",
                     num_classes=7, kwargs=VIT.kwargs)
    with pytest.raises(ModelError, match="does not fit model vit_tiny_patch16_224.*num_classes"):
        load_model(spec, base_dir=tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    spec = ModelSpec(source="checkpoint", arch="vit_tiny_patch16_224", path="junk.pth")
    with pytest.raises(ModelError, match="cannot read weights file"):
        load_model(spec, base_dir=tmp_path)


def test_trained_in_study_weights(tmp_path):
    spec = ModelSpec.model_validate({**VIT.model_dump(), "train": {"dataset": "shapes"}})
    untrained = build_untrained(spec)
    assert untrained.training and all(p.requires_grad for p in untrained.net.parameters())
    state = _perturbed_state(spec, 4)
    torch.save(state, tmp_path / "checkpoint.pt")
    model = load_model(spec, weights=tmp_path / "checkpoint.pt")
    _assert_state_equal(model.net, state)
    assert not model.training
    assert model.model_id.startswith(model_identity(spec)) and "trained:sha256:" in model.model_id
    with pytest.raises(ModelError, match="train task's checkpoint"):
        load_model(spec)


def _empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.parametrize("spec", [
    ModelSpec(source="timm", name="vit_base_patch16_384.orig_in21k_ft_in1k"),
    ModelSpec(source="open_clip", name="ViT-B-32-quickgelu", pretrained="openai"),
    ModelSpec(source="torchvision", name="resnet50", pretrained="IMAGENET1K_V1"),
])
@pytest.mark.parametrize("offline", [True, False])
def test_uncached_weights_fail_fast_with_both_remedies(tmp_path, monkeypatch, spec, offline):
    _empty_hub_cache(tmp_path, monkeypatch)
    if not offline:  # "online" but nothing answers: a closed local port refuses at once
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setattr(weights_module, "_reachable", {})
        if spec.source == "torchvision":
            monkeypatch.setattr(weights_module, "reachable", lambda url, timeout=1.0: False)
    start = time.monotonic()
    with pytest.raises(ModelError) as err:
        load_model(spec)
    assert time.monotonic() - start < 1.0
    message = str(err.value)
    assert (spec.name in message and "weights:" in message and "cache" in message)
    with pytest.raises(ModelError):
        check_weights(spec)


def test_cached_hub_weights_load_without_network(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    _empty_hub_cache(tmp_path, monkeypatch)
    spec = ModelSpec(source="timm", name="test_vit.r160_in1k")
    random_spec = ModelSpec(source="timm", name="test_vit.r160_in1k", pretrained=False)
    state = _perturbed_state(random_spec, 5)
    repo = tmp_path / "hub" / "models--timm--test_vit.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    check_weights(spec)
    model = load_model(spec)
    _assert_state_equal(model.net, state)
    assert model.model_id == "timm:test_vit.r160_in1k"
    assert inspect_model(spec).preprocess.size == 160


def test_unknown_names_suggest_close_matches():
    with pytest.raises(ModelError, match="Did you mean: vit_base_patch16_384"):
        inspect_model(ModelSpec(source="timm", name="vit_base_patch16_385"))
    with pytest.raises(ModelError, match="Did you mean: resnet50"):
        inspect_model(ModelSpec(source="torchvision", name="resnet5O"))
    with pytest.raises(ModelError, match="its tags are: .*augreg"):
        load_model(ModelSpec(source="timm", name="vit_tiny_patch16_224", pretrained="nope"))
    with pytest.raises(ModelError, match="rejects its kwargs"):
        inspect_model(ModelSpec(source="timm", name="resnet18", kwargs={"depthh": 3}))
