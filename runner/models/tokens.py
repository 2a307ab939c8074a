"""Token surgery on a plain ViT through ``ViTParts``: CLS isolation and patch heads.

Isolating CLS at insertion layer L: the CLS token alone runs through blocks [0, L), the patch
tokens run through blocks [0, L) without it, then the joined sequence runs through blocks
[L, depth) and the model's own head reads it. L = 0 is the unmodified model. Other prefix
tokens (DeiT's distillation token, registers) stay with CLS: they are not image tokens, and
DeiT's head reads its distillation token too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from runner.models.base import ViTParts


def split_prefix(tokens: torch.Tensor, n_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prefix tokens (B, P, D), patch tokens (B, N, D)) of a token sequence."""
    return tokens[:, :n_prefix], tokens[:, n_prefix:]


def isolated_logits(
    vit: ViTParts, tokens: torch.Tensor, layers: Iterable[int]
) -> dict[int, torch.Tensor]:
    """Logits with CLS isolated through blocks [0, L), for each L in ``layers`` (0..depth).

    ``tokens`` is ``vit.embed(x)``. The two separate streams are advanced block by block once
    and branch off at every requested L, so all layers cost one pass of each stream plus the
    joint tail of each.
    """
    if vit.cls_index is None:
        raise ValueError("CLS isolation needs a model with a CLS token")
    wanted = sorted(set(int(layer) for layer in layers))
    if wanted and not 0 <= wanted[0] <= wanted[-1] <= vit.depth:
        raise ValueError(f"insertion layers must be within 0..{vit.depth}, got {wanted}")
    prefix, patches = split_prefix(tokens, vit.num_prefix_tokens)
    out: dict[int, torch.Tensor] = {}
    for layer in range(wanted[-1] + 1 if wanted else 0):
        if layer in wanted:
            joined = torch.cat([prefix, patches], dim=1)
            out[layer] = vit.pool_head(vit.run_blocks(joined, layer, vit.depth))
        if layer < wanted[-1]:
            prefix = vit.run_blocks(prefix, layer, layer + 1)
            patches = vit.run_blocks(patches, layer, layer + 1)
    return out


def patch_token_logits(vit: ViTParts, final_tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, classes): the head (final norm + classifier) on each patch token on its own."""
    return vit.token_head(split_prefix(final_tokens, vit.num_prefix_tokens)[1])
