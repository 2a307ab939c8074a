"""The models the benches time, built untrained (timing does not depend on weights)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_vit():
    """The quickstart study's ``vit`` model (``studies/quickstart.yaml``), built untrained."""
    from runner.models import build_untrained
    from runner.spec import load_study

    spec = load_study(ROOT / "studies" / "quickstart.yaml").study.models["vit"]
    return build_untrained(spec.model_copy(update={"train": None}))


def vit_base():
    """timm's ``vit_base_patch16_224`` (ViT-B/16 at 224 px), random init."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    return build_untrained(ModelSpec(source="timm", name="vit_base_patch16_224",
                                     pretrained=False))
