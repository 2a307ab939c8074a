"""Models behind one interface: timm, open_clip, torchvision and local weights files.

``load_model`` / ``build_untrained`` / ``inspect_model`` build models (they import torch and the
model libraries when called); ``model_identity``, ``check_sites`` and ``format_sites`` are
torch-free, for the planner and ``Kind.check``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.models.identity import file_sha256, model_identity
from runner.models.sites import check_sites, format_sites, parse_site, site_name

if TYPE_CHECKING:
    from runner.models.base import LoadedModel, ModelInfo, Preprocess, SiteInfo, ViTParts
    from runner.models.loader import build_untrained, check_weights, inspect_model, load_model
    from runner.models.preprocess import pixel_transform, resize_size

_LAZY = {
    "load_model": "runner.models.loader",
    "build_untrained": "runner.models.loader",
    "inspect_model": "runner.models.loader",
    "check_weights": "runner.models.loader",
    "LoadedModel": "runner.models.base",
    "ModelInfo": "runner.models.base",
    "Preprocess": "runner.models.base",
    "SiteInfo": "runner.models.base",
    "ViTParts": "runner.models.base",
    "pixel_transform": "runner.models.preprocess",
    "resize_size": "runner.models.preprocess",
}


def __getattr__(name: str) -> Any:
    """Import torch-dependent names on first use, so planning stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runner.models' has no attribute {name!r}")


__all__ = [
    "LoadedModel",
    "ModelInfo",
    "Preprocess",
    "SiteInfo",
    "ViTParts",
    "build_untrained",
    "check_sites",
    "check_weights",
    "file_sha256",
    "format_sites",
    "inspect_model",
    "load_model",
    "model_identity",
    "parse_site",
    "pixel_transform",
    "resize_size",
    "site_name",
]
