"""Where a feature's page lives in a study's atlas (``vitstudy atlas``), so that the report
and the atlas agree on links without importing each other. Paths are relative to the atlas
root (``atlas/<study>/`` by default); a model's folder is its ``slug`` and a site is one of
the fixed site names (``mlp``, ``q``, ...), so they open from
``file://`` on every system."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from runner.present.text import slug

#: The atlas's folder when ``--out`` is not given, relative to the working directory.
DEFAULT_ROOT = "atlas"
#: The atlas's own record of the files it wrote (and of its study), at its root: a folder
#: holds an atlas exactly when this file is there.
MANIFEST = ".atlas-manifest.json"
#: The atlas's front page: its models and their layers.
INDEX = "index.html"


@lru_cache(maxsize=4096)
def model_dir(model: str) -> str:
    """A model's folder in the atlas (its layers' grids and its features' pages)."""
    return slug(model)


def model_page(model: str) -> str:
    """A model's page, its layers: ``<model>/index.html``."""
    return f"{model_dir(model)}/index.html"


def layer_page(model: str, site: str, layer: int) -> str:
    """The grid of a layer's features: ``<model>/<site>-<layer>/index.html``."""
    return f"{model_dir(model)}/{site}-{layer:02d}/index.html"


def grid_page(model: str, site: str, layer: int, page: int) -> str:
    """Page ``page`` (1-based) of a layer's grid; the first is ``layer_page``."""
    if page <= 1:
        return layer_page(model, site, layer)
    return f"{model_dir(model)}/{site}-{layer:02d}/page-{page}.html"


def feature_page(model: str, site: str, layer: int, feature: int) -> str:
    """A feature's own page: ``<model>/<site>-<layer>/f<feature>.html``."""
    return f"{model_dir(model)}/{site}-{layer:02d}/f{feature:05d}.html"


def feature_image(model: str, site: str, layer: int, feature: int, part: str = "") -> str:
    """A strip of square cells showing part of a feature: its optimized images
    (``<model>/<site>-<layer>/img/f<feature>.webp``) or, with ``part="top"``, its most
    activating images and their activation maps (``.../img/f<feature>-top.webp``)."""
    suffix = f"-{part}" if part else ""
    return f"{model_dir(model)}/{site}-{layer:02d}/img/f{feature:05d}{suffix}.webp"


def report_links(atlas: str, model: str, site: str, shown: Sequence[tuple[int, int]]
                 ) -> list[tuple[str, str]]:
    """(text, href) from a report's page (``atlas``: the atlas root relative to it) to the grid
    of each layer in ``shown`` (its (layer, feature) pairs), each followed by its features."""
    links = []
    for layer in dict.fromkeys(layer for layer, _ in shown):
        links.append((f"layer {layer}", f"{atlas}/{layer_page(model, site, layer)}"))
        links += [(f"feature {f}", f"{atlas}/{feature_page(model, site, layer, f)}")
                  for lay, f in shown if lay == layer]
    return links


def relative(from_page: str, to_path: str) -> str:
    """The link from one atlas page to another atlas path (both relative to the root, plain
    ``a/b/c`` paths as this module makes them; thousands per build, so string work only)."""
    start, target = from_page.split("/")[:-1], to_path.split("/")
    common = 0
    while (common < len(start) and common < len(target) - 1
           and start[common] == target[common]):
        common += 1
    return "/".join([".."] * (len(start) - common) + target[common:])


def atlas_study(folder: str | Path) -> str | None:
    """The study whose atlas ``folder`` holds, or None when it holds none (or an unreadable
    manifest)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    study = manifest.get("study") if isinstance(manifest, dict) else None
    return study if isinstance(study, str) else None
