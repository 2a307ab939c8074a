"""The one model interface every study kind uses, whatever library the model came from.

A ``LoadedModel`` takes images in [0, 1] at model resolution, (B, 3, H, W), and normalizes
inside its forward, because masking, filtering and optimization all work in pixel space.
It names internal activations by canonical *sites* (``block{l}.mlp``, ``block{l}.q/k/v``,
``block{l}.out`` for transformers; ``stage{s}`` for CNNs) and can stop the forward after the
deepest site it was asked for. Transformers also expose ``ViTParts`` for token surgery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocess:
    """How a model expects its input: resize shorter side to size/crop_pct, centre-crop size."""

    size: int
    crop_pct: float
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class SiteInfo:
    """A readable activation. Token sites are (B, tokens, C); CNN sites are (B, C, H, W)."""

    name: str
    layer: int | None  # block index (0-based) or stage index
    what: str  # "mlp" | "q" | "k" | "v" | "out" | "stage"
    n_features: int  # channels
    prefix_tokens: int  # CLS / distillation / register tokens before the patch tokens
    grid: tuple[int, int]  # patch grid (tokens) or spatial size (CNN)
    tokens: bool  # True: (B, prefix + gh*gw, C); False: (B, C, gh, gw)


@dataclass(frozen=True)
class ModelInfo:
    """What the planner needs to validate a study against a model, without weights."""

    name: str
    num_classes: int
    depth: int  # transformer blocks, or CNN stages
    has_cls_token: bool
    sites: dict[str, SiteInfo]
    preprocess: Preprocess
    #: "logits" (a classifier: num_classes outputs) or "embedding" (CLIP without a zero-shot
    #: head: num_classes is then the embedding width, and accuracy is meaningless)
    outputs: str = "logits"


@dataclass(frozen=True)
class FeatureRead:
    """Rows ``rows`` of a batch each read one channel of ``site``: row i reads ``features[i]``."""

    site: str
    rows: slice
    features: torch.Tensor  # (rows,) long


class ViTParts:
    """Token surgery on a plain ViT (CLS isolation, patch heads).

    ``embed`` returns normalized-input tokens after patch embedding, position embedding and any
    pre-norm: (B, prefix + N, D). ``run_blocks`` runs blocks [start, end). ``pool_head`` is the
    model's own head on a token sequence (final norm + pooling + classifier), so
    ``pool_head(run_blocks(embed(x), 0, depth)) == model(x)``. ``token_head`` applies final norm
    and classifier to every token on its own: (B, T, D) -> (B, T, classes).
    """

    depth: int
    num_prefix_tokens: int
    cls_index: int | None

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run_blocks(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        raise NotImplementedError

    def pool_head(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def token_head(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LoadedModel(nn.Module):
    """A model ready for study kinds: [0, 1] in, logits out, sites readable."""

    model_id: str
    info: ModelInfo
    net: nn.Module  # the library's own module (what a checkpoint's state_dict belongs to)

    @property
    def preprocess(self) -> Preprocess:
        return self.info.preprocess

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def capture(
        self, x01: torch.Tensor, sites: Sequence[str], *, stop_early: bool = True
    ) -> dict[str, torch.Tensor]:
        """Activations at ``sites``; with ``stop_early`` the forward ends after the deepest one."""
        raise NotImplementedError

    def read_features(
        self, x01: torch.Tensor, reads: Sequence[FeatureRead], *, truncated: bool = True
    ) -> list[torch.Tensor]:
        """One channel per row: for each read, (rows, T) token or (rows, H, W) CNN activations
        of its features. ``truncated``: the forward ends at the deepest site (and may compute
        only the channels read); otherwise it runs in full, as a plain hooked forward would."""
        from runner.ops.activation import pick_features

        acts = self.capture(x01, [r.site for r in reads], stop_early=truncated)
        return [pick_features(batch_rows(acts[r.site], r.rows), r.features,
                              self.info.sites[r.site].tokens) for r in reads]

    @property
    def vit(self) -> ViTParts | None:
        """Token-surgery parts for plain ViTs; None for other architectures."""
        return None


def batch_rows(t: torch.Tensor, rows: slice) -> torch.Tensor:
    """``t[rows]``, without the slice when it covers every row (its backward copies in full)."""
    return t if rows.indices(t.shape[0]) == (0, t.shape[0], 1) else t[rows]
