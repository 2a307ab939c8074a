"""What a source says about a built library module: preprocessing and where its sites are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from runner.models.base import Preprocess, ViTParts
from runner.models.hooked import Block, HookedModel

#: Seed of every random-init build, so a random-init model is the same model every time.
INIT_SEED = 0


@dataclass(frozen=True)
class Structure:
    """A source's description of its module: transformer blocks or CNN stages, token layout."""

    preprocess: Preprocess
    blocks: list[Block] | None = None  # transformer blocks in forward order
    stages: list[str] | None = None  # CNN stage module paths; empty: find them by resolution
    max_prefix: int = 1  # most prefix tokens a block can carry
    known_grid: tuple[int, int] | None = None  # patch grid of a flat ViT
    sequence_first: bool = False  # blocks run (T, B, C)
    has_cls_token: bool = False
    parts: Callable[[HookedModel], ViTParts] | None = None  # ViTParts factory for plain ViTs
    num_classes: int | None = None  # when the head is not part of the module (zero-shot CLIP)
    outputs: str = "logits"  # or "embedding" (CLIP image tower without a zero-shot head)


@contextmanager
def seeded(seed: int = INIT_SEED) -> Iterator[None]:
    """Run a random-init build under a fixed seed without disturbing the global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
