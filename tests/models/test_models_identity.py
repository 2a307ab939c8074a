"""Task-key identity of model entries: names and tags, local files by content, no torch."""

import json
import subprocess
import sys

import pytest

from runner.errors import ModelError
from runner.models import file_sha256, model_identity
from runner.models import identity as identity_module
from runner.schema import ModelSpec


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(identity_module, "_memory_hashes", {})


def spec(**kw) -> ModelSpec:
    return ModelSpec.model_validate(kw)


def test_library_models_are_named_by_source_name_and_tag():
    assert model_identity(spec(source="timm", name="vit_base_patch16_384.orig_in21k_ft_in1k")) \
        == "timm:vit_base_patch16_384.orig_in21k_ft_in1k"
    assert model_identity(spec(source="timm", name="resnet50", pretrained="tv_in1k")) \
        == "timm:resnet50.tv_in1k"
    assert model_identity(spec(source="open_clip", name="ViT-B-32-quickgelu",
                               pretrained="openai")) == "open_clip:ViT-B-32-quickgelu@openai"
    assert model_identity(spec(source="torchvision", name="resnet50",
                               pretrained="IMAGENET1K_V1")) == "torchvision:resnet50@IMAGENET1K_V1"


def test_defaults_written_out_change_nothing_and_results_relevant_fields_do():
    base = model_identity(spec(source="timm", name="vit_tiny_patch16_224"))
    assert model_identity(spec(source="timm", name="vit_tiny_patch16_224", pretrained=True,
                               kwargs={})) == base
    a = spec(source="timm", name="vit_tiny_patch16_224", pretrained=False,
             kwargs={"img_size": 32, "depth": 2})
    b = spec(source="timm", name="vit_tiny_patch16_224", pretrained=False,
             kwargs={"depth": 2, "img_size": 32})
    assert model_identity(a) == model_identity(b)
    assert model_identity(a) == ('timm:vit_tiny_patch16_224@random-init '
                                 '{"kwargs":{"depth":2,"img_size":32}}')
    others = [
        spec(source="timm", name="vit_tiny_patch16_224", num_classes=10),
        spec(source="timm", name="vit_tiny_patch16_224", preprocess={"crop_pct": 1.0}),
        spec(source="open_clip", name="ViT-B-32", pretrained="openai", zero_shot={}),
    ]
    ids = {model_identity(s) for s in others} | {base}
    assert len(ids) == 4
    trained = spec(source="timm", name="vit_tiny_patch16_224", train={"dataset": "shapes"})
    assert model_identity(trained) == "timm:vit_tiny_patch16_224@random-init"


def test_local_file_identity_is_its_content(tmp_path):
    (tmp_path / "a").mkdir()
    weights = tmp_path / "a" / "w.pth"
    weights.write_bytes(b"first version")
    s = spec(source="checkpoint", arch="vit_tiny_patch16_224", path="a/w.pth", num_classes=3)
    first = model_identity(s, base_dir=tmp_path)
    import hashlib

    assert first.startswith("checkpoint:vit_tiny_patch16_224@sha256:"
                            + hashlib.sha256(b"first version").hexdigest())
    moved = tmp_path / "elsewhere.pth"
    moved.write_bytes(b"first version")
    s2 = spec(source="checkpoint", arch="vit_tiny_patch16_224", path=str(moved), num_classes=3)
    assert model_identity(s2) == first  # paths are not part of the identity
    weights.write_bytes(b"second version, longer")
    assert model_identity(s, base_dir=tmp_path) != first
    timm_file = spec(source="timm", name="vit_tiny_patch16_224", weights=str(moved))
    assert "@sha256:" in model_identity(timm_file)


def test_hash_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    digest = file_sha256(f)
    cache = json.loads((tmp_path / "cache" / "file_sha256.json").read_text())
    entry = cache[str(f.resolve())]
    assert entry["sha256"] == digest and entry["size"] == 1000
    # a new process (empty memory cache) trusts the disk cache while size and mtime hold
    entry["sha256"] = "cached-value"
    (tmp_path / "cache" / "file_sha256.json").write_text(json.dumps(cache))
    monkeypatch.setattr(identity_module, "_memory_hashes", {})
    assert file_sha256(f) == "cached-value"


def test_missing_local_file_is_a_model_error(tmp_path):
    s = spec(source="timm", name="vit_tiny_patch16_224", weights="nope.pth")
    with pytest.raises(ModelError, match="nope.pth.*does not exist"):
        model_identity(s, base_dir=tmp_path)


def test_identity_does_not_import_torch():
    code = (
        "import sys\n"
        "from runner.models import model_identity, check_sites, format_sites\n"
        "from runner.schema import ModelSpec\n"
        "model_identity(ModelSpec(source='timm', name='vit_base_patch16_384'))\n"
        "heavy = [m for m in ('torch', 'timm', 'open_clip') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
