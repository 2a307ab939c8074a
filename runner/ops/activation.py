"""Feature activations read the paper's way: patch tokens only (CLS and other prefix tokens left
out), scored by their mean (or max), mapped back to the patch grid, and ranked over a dataset
by a streaming top-k that handles every feature of a site at once."""

from __future__ import annotations

from typing import Literal

import torch

Score = Literal["mean", "max"]


def patch_view(acts: torch.Tensor, prefix_tokens: int, tokens: bool = True) -> torch.Tensor:
    """(B, N, C) patch activations, row-major over the grid: token sites (B, prefix + N, C)
    lose their prefix tokens; CNN sites (B, C, H, W) are flattened to (B, H*W, C)."""
    if tokens:
        return acts[:, prefix_tokens:, :]
    return acts.flatten(2).transpose(1, 2)


def patch_score(patches: torch.Tensor, score: Score = "mean") -> torch.Tensor:
    """(B, C): each feature's mean (the paper's objective) or max over patch positions."""
    if score == "mean":
        return patches.mean(dim=1)
    if score == "max":
        return patches.amax(dim=1)
    raise ValueError(f"unknown score {score!r}")


def pick_features(acts: torch.Tensor, features: torch.Tensor, tokens: bool = True
                  ) -> torch.Tensor:
    """Row b's channel ``features[b]`` of a site's activations: token (B, T, C) -> (B, T), CNN
    (B, C, H, W) -> (B, H, W). Gathered, so the backward scatters into one zero tensor instead
    of copying slices."""
    index = features.to(acts.device, torch.long)
    if tokens:
        return acts.gather(2, index.view(-1, 1, 1).expand(-1, acts.shape[1], 1)).squeeze(2)
    return acts.gather(1, index.view(-1, 1, 1, 1).expand(-1, 1, *acts.shape[2:])).squeeze(1)


def linear_features(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    features: torch.Tensor) -> torch.Tensor:
    """(B, T): row b's output ``features[b]`` of the linear layer (``weight`` (F, D), ``bias``
    (F,)) on its tokens ``x`` (B, T, D), i.e. ``F.linear(x, weight, bias)`` gathered at one
    output per row, at 1/F of the cost: what a feature objective needs from the last layer."""
    index = features.to(x.device, torch.long)
    out = torch.bmm(x, weight[index].unsqueeze(2)).squeeze(2)
    return out if bias is None else out + bias[index].unsqueeze(1)


def patch_values(per_row: torch.Tensor, prefix_tokens: int = 0, tokens: bool = True
                 ) -> torch.Tensor:
    """(B, N): one channel per row at the patch positions only, from (B, T) tokens (prefix
    tokens left out) or (B, H, W) CNN maps (flattened row-major)."""
    return per_row[:, prefix_tokens:] if tokens else per_row.flatten(1)


def patch_mean(per_row: torch.Tensor, prefix_tokens: int = 0, tokens: bool = True
               ) -> torch.Tensor:
    """(B,): the mean over patch positions of one channel per row (see ``patch_values``): the
    paper's objective."""
    return patch_values(per_row, prefix_tokens, tokens).mean(dim=1)


def activation_maps(patches: torch.Tensor, grid: tuple[int, int],
                    features: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K, gh, gw) patch-grid maps of ``features`` (K indices; all C when None)."""
    if features is not None:
        patches = patches.index_select(2, features.to(patches.device, torch.long))
    b, n, k = patches.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} patch tokens do not fill a {grid[0]}x{grid[1]} grid")
    return patches.transpose(1, 2).reshape(b, k, *grid)


class TopK:
    """The k highest-scoring images of every feature, kept while streaming over a dataset.

    ``update`` merges one batch into the running top-k of all F features with one
    ``torch.topk`` on the device; with ``keep_maps`` it also keeps each kept image's map
    (N patch values). Slots not yet filled hold index -1 and score -inf.
    """

    def __init__(self, n_features: int, k: int, *, keep_maps: bool = False,
                 device: torch.device | str = "cpu") -> None:
        self.k = k
        self.values = torch.full((k, n_features), float("-inf"), device=device)
        self.indices = torch.full((k, n_features), -1, dtype=torch.long, device=device)
        self.maps: torch.Tensor | None = None
        self.keep_maps = keep_maps
        self.seen = 0

    def update(self, indices: torch.Tensor, scores: torch.Tensor,
               patches: torch.Tensor | None = None) -> None:
        """Merge a batch: ``indices`` (B,) dataset indices, ``scores`` (B, F), and with
        ``keep_maps`` the batch's patch activations (B, N, F)."""
        scores = scores.detach().to(self.values)
        batch_idx = indices.to(self.indices.device, torch.long)[:, None].expand_as(scores)
        values = torch.cat([self.values, scores])
        top = values.topk(self.k, dim=0)  # (k, F): position in [0, k + B)
        self.values = top.values
        self.indices = torch.cat([self.indices, batch_idx]).gather(0, top.indices)
        if self.keep_maps:
            if patches is None:
                raise ValueError("this TopK keeps maps: update needs the patch activations")
            new_maps = patches.detach().to(self.values).permute(0, 2, 1)  # (B, F, N)
            if self.maps is None:
                self.maps = new_maps.new_zeros((self.k, *new_maps.shape[1:]))
            pos = top.indices[:, :, None].expand(-1, -1, new_maps.shape[2])
            kept = self.maps.gather(0, pos.clamp(max=self.k - 1))  # no (k + B, F, N) copy
            entered = new_maps.gather(0, (pos - self.k).clamp(min=0))
            self.maps = torch.where(pos < self.k, kept, entered)
        self.seen += int(indices.numel())

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(values (F, k'), indices (F, k'), maps (F, k', N) or None), best first, where
        k' = min(k, images seen)."""
        kept = min(self.k, self.seen)
        maps = None if self.maps is None else self.maps[:kept].transpose(0, 1)
        return self.values[:kept].T, self.indices[:kept].T, maps
