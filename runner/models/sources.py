"""The seam between the loader and a model library: what a source module must offer.

A source is a module (``timm_source``, ``open_clip_source``, ``torchvision_source``) whose
module-level functions implement ``ModelSource``; ``source_of`` finds the one behind a model
entry. The ``checkpoint`` source is timm's: an architecture name and a weights file.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, cast

if TYPE_CHECKING:
    from torch import nn

    from runner.models.structure import Structure
    from runner.schema import ModelSpec

#: How a source builds its module: ``meta`` (shapes only, no memory), ``random`` (seeded
#: random init), ``pretrained`` (the library's weights, from a cache or a download) or ``file``
#: (a local weights file, given as ``weights_file``).
Init = Literal["meta", "random", "pretrained", "file"]

_SOURCE_MODULES = {
    "timm": "runner.models.timm_source",
    "checkpoint": "runner.models.timm_source",
    "open_clip": "runner.models.open_clip_source",
    "torchvision": "runner.models.torchvision_source",
}


class ModelSource(Protocol):
    """A model library as the loader uses it; a failure the entry causes is a ``ModelError``."""

    def build(self, spec: ModelSpec, init: Init, weights_file: Path | None,
              base_dir: Path | None = None) -> tuple[nn.Module, nn.Module | None]:
        """The library module and, when the entry adds one, a head applied to its output."""
        ...

    def locate_pretrained(self, spec: ModelSpec) -> object:
        """Check that the entry's pretrained weights are cached or can be downloaded; what it
        returns (a file, a tag, a weights enum) is the source's own business."""
        ...

    def structure(self, net: nn.Module, spec: ModelSpec,
                  base_dir: Path | None = None) -> Structure:
        """Where the built module's sites are, and how its input is preprocessed."""
        ...


def source_of(spec: ModelSpec) -> ModelSource:
    """The source module behind a model entry (imported on first use: libraries are heavy)."""
    return cast("ModelSource", importlib.import_module(_SOURCE_MODULES[spec.source]))
