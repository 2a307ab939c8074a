"""Every model of every shipped study file (studies/*.yaml) exists in its library's own offline
registry, with its pretrained tag: timm (``list_models`` / ``list_pretrained``), open_clip
(``list_pretrained``) and torchvision (``list_models`` / ``get_model_weights``). A typo in a
name or a tag is caught here, not by a user with a GPU and a day's queue behind them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))


@functools.cache
def _timm() -> tuple[set[str], set[str]]:
    """timm's architectures and its ``arch.tag`` pretrained names."""
    import timm

    return set(timm.list_models()), set(timm.list_pretrained())


@functools.cache
def _open_clip() -> tuple[set[str], set[tuple[str, str]]]:
    import open_clip

    return set(open_clip.list_models()), set(open_clip.list_pretrained())


def _timm_problem(name: str, pretrained: Any) -> str | None:
    arch, _, tag = name.partition(".")
    archs, tagged = _timm()
    if arch not in archs:
        return f"timm has no architecture {arch!r}"
    if pretrained is False:
        return None
    if isinstance(pretrained, str):
        if tag and tag != pretrained:
            return f"two tags: {tag!r} in the name, {pretrained!r} in `pretrained`"
        tag = pretrained
    if tag:
        return None if f"{arch}.{tag}" in tagged else f"timm has no weights {arch}.{tag}"
    has_any = any(full.partition(".")[0] == arch for full in tagged)
    return None if has_any else f"timm has no pretrained weights for {arch}"


def _open_clip_problem(name: str, pretrained: Any) -> str | None:
    names, pairs = _open_clip()
    if name not in names:
        return f"open_clip has no model {name!r}"
    is_tag = isinstance(pretrained, str) and not Path(pretrained).suffix  # not a file
    if is_tag and (name, pretrained) not in pairs:
        return f"open_clip has no weights {pretrained!r} for {name}"
    return None


def _torchvision_problem(name: str, pretrained: Any) -> str | None:
    import torchvision

    if name not in torchvision.models.list_models():
        return f"torchvision has no model {name!r}"
    if isinstance(pretrained, str) and pretrained not in (
            torchvision.models.get_model_weights(name).__members__):
        return f"torchvision has no weights {pretrained!r} for {name}"
    return None


def registry_problem(entry: dict[str, Any]) -> str | None:
    """What the library's registry says is wrong with a model entry, or None."""
    source, pretrained = entry["source"], entry.get("pretrained", True)
    if entry.get("weights") or entry.get("train"):  # a local file, or trained in the study
        pretrained = False
    if source == "checkpoint":
        return _timm_problem(entry["arch"], False)
    check = {"timm": _timm_problem, "open_clip": _open_clip_problem,
             "torchvision": _torchvision_problem}[source]
    return check(entry["name"], pretrained)


def _models(path: Path) -> dict[str, dict[str, Any]]:
    return yaml.safe_load(path.read_text())["models"]


def test_there_are_study_files_with_library_models() -> None:
    names = {p.name for p in STUDIES}
    assert {"paper.yaml", "paper_visual.yaml", "quickstart.yaml"} <= names
    sources = {m["source"] for p in STUDIES for m in _models(p).values()}
    assert {"timm", "open_clip", "torchvision"} <= sources


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_model_name_and_tag_is_in_its_librarys_registry(path: Path) -> None:
    problems = {name: registry_problem(entry) for name, entry in _models(path).items()}
    assert not {k: v for k, v in problems.items() if v}, f"{path.name}: {problems}"


@pytest.mark.parametrize(("entry", "problem"), [
    ({"source": "timm", "name": "vit_base_patch16_384.orig_in21k_ft_in1k"}, None),
    ({"source": "timm", "name": "vit_base_patch61_384.orig_in21k_ft_in1k"},
     "timm has no architecture 'vit_base_patch61_384'"),
    ({"source": "timm", "name": "resnet50.tv_in1kk"}, "timm has no weights resnet50.tv_in1kk"),
    ({"source": "timm", "name": "resnet50", "pretrained": "tv_in1k"}, None),
    ({"source": "timm", "name": "resnet50.tv_in1k", "pretrained": "a1_in1k"},
     "two tags: 'tv_in1k' in the name, 'a1_in1k' in `pretrained`"),
    ({"source": "timm", "name": "test_resnet", "pretrained": False}, None),
    ({"source": "open_clip", "name": "ViT-B-32", "pretrained": "openai"}, None),
    ({"source": "open_clip", "name": "ViT-B-32", "pretrained": "opneai"},
     "open_clip has no weights 'opneai' for ViT-B-32"),
    ({"source": "open_clip", "name": "ViT-B-23", "pretrained": "openai"},
     "open_clip has no model 'ViT-B-23'"),
    ({"source": "torchvision", "name": "mobilenet_v2", "pretrained": "IMAGENET1K_V1"}, None),
    ({"source": "torchvision", "name": "mobilenet_v2", "pretrained": "IMAGENET1K_V3"},
     "torchvision has no weights 'IMAGENET1K_V3' for mobilenet_v2"),
    ({"source": "torchvision", "name": "mobilenetv2"}, "torchvision has no model 'mobilenetv2'"),
    ({"source": "checkpoint", "arch": "vit_small_patch16_224", "path": "x.pth"}, None),
], ids=lambda v: str(v)[:40])
def test_the_check_catches_typos(entry: dict[str, Any], problem: str | None) -> None:
    assert registry_problem(entry) == problem


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_entrys_layers_and_features_fit_its_models(path: Path, monkeypatch,
                                                         tmp_path: Path) -> None:
    """What `vitstudy run` checks before running, for the models alone (built on the meta
    device, no weights, no data): a feature range past a CNN stage's width fails here."""
    from PIL import Image

    from runner.models import inspect_model
    from runner.plan import check_params_fit_models, make_plan
    from runner.spec import load_study

    for var in ("IMAGENET_VAL", "IMAGENET_VAL_BOXES", "IMAGENET_TRAIN", "IMAGENET_TRAIN_BOXES"):
        folder = tmp_path / var.lower()
        monkeypatch.setenv(var, str(folder))
        if not var.endswith("BOXES"):  # an ImageNet layout of one image
            (folder / "n01440764").mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(folder / "n01440764" / "a.JPEG")
        else:
            folder.mkdir()
    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / "cache"))
    plan = make_plan(load_study(path))
    loaded = plan.study
    infos = {name: inspect_model(spec, base_dir=loaded.base_dir, shapes_only=True)
             for name, spec in loaded.study.models.items()
             if any(t.model == name for t in plan.tasks)}
    check_params_fit_models(plan, plan.tasks, infos)
