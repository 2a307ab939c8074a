"""A model's preprocessing, read from its library's own config, with a model entry's overrides.

Every library says the same five things (input size, crop fraction, interpolation, mean, std);
this module turns each library's config into one ``Preprocess``. The resize-and-crop half runs
in pixel space, outside the model; the mean/std half runs inside ``LoadedModel.forward``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runner.models.base import Preprocess

if TYPE_CHECKING:
    from runner.schema import PreprocessOverride

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_size(pre: Preprocess) -> int:
    """The shorter-side length images are resized to before the centre crop of ``pre.size``."""
    return math.floor(pre.size / pre.crop_pct + 1e-6)


def with_overrides(pre: Preprocess, override: PreprocessOverride | None) -> Preprocess:
    """``pre`` with every field the model entry's ``preprocess:`` sets replaced."""
    if override is None:
        return pre
    changes = override.model_dump(exclude_none=True)
    for key in ("mean", "std"):
        if key in changes:
            changes[key] = tuple(float(v) for v in changes[key])
    return replace(pre, **changes)


def from_timm_config(config: dict[str, Any], size: int | None = None) -> Preprocess:
    """From timm's ``resolve_data_config`` output; ``size`` wins over the config's (img_size=)."""
    return Preprocess(
        size=int(size if size is not None else config["input_size"][-1]),
        crop_pct=float(config.get("crop_pct") or 1.0),
        interpolation=_interpolation_name(config.get("interpolation", "bilinear")),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )


def from_open_clip_config(config: dict[str, Any]) -> Preprocess:
    """From open_clip's ``visual.preprocess_cfg``: resize shorter side, centre crop, no margin."""
    size = config["size"]
    return Preprocess(
        size=int(size if isinstance(size, int) else size[-1]),
        crop_pct=1.0,
        interpolation=_interpolation_name(config.get("interpolation", "bicubic")),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )


def from_torchvision_transform(transform: Any) -> Preprocess:
    """From a torchvision weights enum's ``transforms()`` (``ImageClassification``)."""
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    return Preprocess(
        size=crop,
        crop_pct=crop / resize,
        interpolation=_interpolation_name(transform.interpolation),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
    )


def torchvision_default() -> Preprocess:
    """torchvision's classic evaluation transform: resize 256, crop 224, bilinear, ImageNet."""
    return Preprocess(size=224, crop_pct=224 / 256, interpolation="bilinear",
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)


def pixel_transform(pre: Preprocess) -> Any:
    """PIL image -> float (3, size, size) in [0, 1]: the library's eval transform, no Normalize."""
    from torchvision import transforms as T

    mode = getattr(T.InterpolationMode, pre.interpolation.upper())
    return T.Compose([
        T.Resize(resize_size(pre), interpolation=mode),
        T.CenterCrop(pre.size),
        T.Lambda(lambda img: img.convert("RGB")),
        T.ToTensor(),
    ])


def _interpolation_name(value: Any) -> str:
    """'bicubic' from 'bicubic', InterpolationMode.BICUBIC or PIL's constants' names."""
    name = getattr(value, "value", value)
    name = str(name).lower().split(".")[-1]
    if name not in ("bilinear", "bicubic", "nearest"):
        return "bicubic" if "cubic" in name else "bilinear"
    return name
