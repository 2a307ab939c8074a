"""``vitstudy atlas``: a static, browsable site of a study's features, in the spirit of OpenAI
Microscope, built from the result database and opened from ``file://`` with no server. See
docs/atlas.md for what each page shows and how a rebuild decides what to write."""

from __future__ import annotations

from runner.atlas.build import AtlasResult, build_atlas
from runner.atlas.manifest import AtlasFolderError

__all__ = ["AtlasFolderError", "AtlasResult", "build_atlas"]
