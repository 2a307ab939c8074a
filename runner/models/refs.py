"""Short model references for the command line: ``timm:NAME``, ``open_clip:NAME@TAG`` ...

``vitstudy sites timm:vit_base_patch16_384`` needs a model without a study file; a reference is
``[source:]name[@tag]`` (source defaults to timm; timm tags may also be written ``name.tag``).
"""

from __future__ import annotations

from pydantic import ValidationError

from runner.errors import ModelError
from runner.schema import ModelSpec

SOURCES = ("timm", "open_clip", "torchvision")


def parse_model_ref(ref: str) -> ModelSpec:
    """A ``ModelSpec`` from ``[source:]name[@tag]``; ``@false`` means random init."""
    source, sep, rest = ref.partition(":")
    if not sep or source not in SOURCES:
        if sep and source not in SOURCES and not source.startswith("hf-hub"):
            raise ModelError(f"unknown model source {source!r} in {ref!r}; expected one of "
                             f"{', '.join(SOURCES)} (e.g. timm:vit_base_patch16_384)")
        source, rest = "timm", ref
    name, _, tag = rest.partition("@")
    pretrained: bool | str = True
    if tag:
        pretrained = False if tag.lower() in ("false", "random", "none") else tag
    try:
        return ModelSpec(source=source, name=name, pretrained=pretrained)
    except ValidationError as e:
        raise ModelError(f"bad model reference {ref!r}: {e.errors()[0]['msg']}") from e
