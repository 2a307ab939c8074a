"""Shared by the visualize / topk / spatial_drop tests: a tiny ViT with planted colour features,
an in-memory dataset, and a task context writing to a temporary store."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from runner.data.base import Batch, ImageDataset, Sample
from runner.execute.fused import pass_runner
from runner.kinds.base import TaskContext
from runner.store import Store

# One thread: on a shared 2-core machine OpenMP spinning makes tiny models 10-20x slower.
torch.set_num_threads(1)

SIZE = 32  # image side; patches of 8 -> a 4 x 4 grid
RED, GREEN = 0, 1  # block0.mlp features planted to respond to redness and greenness


TINY_VIT = {"img_size": SIZE, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2,
            "num_classes": 4}


@functools.lru_cache(maxsize=1)
def random_vit() -> torch.nn.Module:
    """The tiny ViT with seeded random weights: distinct scores for every feature."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(source="timm", name="vit_tiny_patch16_224", pretrained=False,
                     kwargs=TINY_VIT)
    return build_untrained(spec).eval()


@functools.lru_cache(maxsize=1)
def planted_vit() -> torch.nn.Module:
    """``_colour_vit``, built once per test session."""
    return _colour_vit()


def _colour_vit() -> torch.nn.Module:
    """A 2-block ViT (32 px, 8 px patches, width 32) whose block-0 feed-forward feature 0
    responds to how red a patch is, feature 1 to how green; every other feature is GELU(0)=0.

    Patch embedding: token channel 0 = +redness, 1 = -redness, 4 = +greenness, 5 = -greenness
    (redness = mean over the patch of R - (G + B) / 2 of the normalized input), channels 2, 3 =
    +1, -1 (a constant that keeps LayerNorm from saturating). Attention is switched off, so
    LayerNorm gives feature 0 = GELU(4 r / sqrt(r^2 + g^2 + 1)), increasing in redness r.
    """
    model = _zeroed_vit(TINY_VIT)
    net = model.net
    with torch.no_grad():
        area = 8 * 8
        w = net.patch_embed.proj.weight  # (32, 3, 8, 8)
        for channel, colour in ((0, 0), (4, 1)):
            w[channel].fill_(-0.5 / area)
            w[channel, colour].fill_(1.0 / area)
            w[channel + 1] = -w[channel]
        net.patch_embed.proj.bias[2], net.patch_embed.proj.bias[3] = 1.0, -1.0
        fc1 = net.blocks[0].mlp.fc1
        fc1.weight[RED, 0] = 1.0
        fc1.weight[GREEN, 4] = 1.0
    return model.eval()


def _zeroed_vit(kwargs: dict) -> torch.nn.Module:
    """A timm ViT with every weight zero and every LayerNorm the identity map on its input's
    standardization: attention, position embeddings and the MLP outputs contribute nothing."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    model = build_untrained(ModelSpec(source="timm", name="vit_tiny_patch16_224",
                                      pretrained=False, kwargs=kwargs))
    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()
        for module in model.net.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
    return model


# The gated features of ``gated_vit`` (block 0), beside RED and GREEN.
GATED, NEVER = 2, 3


def gated_vit() -> torch.nn.Module:
    """``planted_vit`` plus two gates on redness in block 0 (pre-activation 10 x feature 0's
    LayerNorm input, which is at most 4): GATED = GELU(10 x - 30) opens only on strongly red
    patches and is flat (gradient exactly 0 in float32) on uniform-noise images, so an
    optimization from noise never moves; NEVER = GELU(10 x - 45) never opens at all."""
    model = _colour_vit()
    fc1 = model.net.blocks[0].mlp.fc1
    with torch.no_grad():
        for feature, bias in ((GATED, -30.0), (NEVER, -45.0)):
            fc1.weight[feature, 0] = 10.0
            fc1.bias[feature] = bias
    return model.eval()


# The two features of ``fragile_vit`` (block 0).
ROBUST, FRAGILE = 0, 1
FRAGILE_VIT = {**TINY_VIT, "patch_size": 16, "depth": 1}


def fragile_weight(patch: int = 16) -> torch.Tensor:
    """(3, patch, patch): a 1-px red/green checkerboard whose phase flips between the left and
    the right half of the patch; its channels sum to 0, so grey levels (luma) are invisible."""
    y, x = torch.meshgrid(torch.arange(patch), torch.arange(patch), indexing="ij")
    sign = (1 - 2 * ((x + y) % 2)) * torch.where(x < patch // 2, 1, -1)
    return sign[None].float() * torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1)


@functools.lru_cache(maxsize=1)
def fragile_vit() -> torch.nn.Module:
    """A 1-block ViT (32 px, 16-px patches: a 2 x 2 grid) with a robust and a fragile feature.
    ROBUST responds to redness (as planted_vit's RED): its optimum, a flat red, survives a
    blur, a shift and JPEG. FRAGILE responds to ``fragile_weight``: its optimum is that exact
    pattern, which a 1-px blur and JPEG's 4:2:0 chroma erase and an 8-px shift (half a patch)
    inverts, and which no dataset image comes near."""
    model = _zeroed_vit(FRAGILE_VIT)
    net = model.net
    with torch.no_grad():
        area = 16 * 16
        w = net.patch_embed.proj.weight  # (32, 3, 16, 16)
        w[0].fill_(-0.5 / area)
        w[0, 0].fill_(1.0 / area)
        w[6] = fragile_weight() * (0.5 / area)
        for channel in (0, 6):
            w[channel + 1] = -w[channel]
        net.patch_embed.proj.bias[2], net.patch_embed.proj.bias[3] = 1.0, -1.0
        fc1 = net.blocks[0].mlp.fc1
        fc1.weight[ROBUST, 0] = 1.0
        fc1.weight[FRAGILE, 6] = 1.0
    return model.eval()


def solid(rgb: Sequence[float], noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """A uint8 (3, SIZE, SIZE) image of one colour, plus optional uniform noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, SIZE, SIZE)
    x = x + noise * (torch.rand((3, SIZE, SIZE), generator=g) * 2 - 1)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def colour_images(n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` images of random muted colours with noise (none purely red or green)."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand((n, 3), generator=g) * 0.6 + 0.2
    return [solid(c.tolist(), noise=0.15, seed=seed + i) for i, c in enumerate(colours)]


class MemoryDataset(ImageDataset):
    """An ImageDataset over in-memory uint8 images; ``None`` entries are unreadable files."""

    def __init__(self, images: Sequence[torch.Tensor | None]) -> None:
        super().__init__(name="memory", root=Path("."), classes=["a", "b"],
                         samples=[Sample(Path(f"{i}.png"), i % 2) for i in range(len(images))])
        self.images = list(images)

    def decode(self, index: int) -> torch.Tensor | None:
        return self.images[index]

    def batches(self, batch_size: int, *, indices: Sequence[int] | None = None,
                workers: int = 0) -> Iterator[Batch]:
        order = list(range(len(self))) if indices is None else list(indices)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            kept = [i for i in chunk if self.images[i] is not None]
            yield Batch(indices=torch.tensor(kept, dtype=torch.long),
                        images=[self.images[i] for i in kept],
                        labels=torch.tensor([self.samples[i].label for i in kept]),
                        boxes=[() for _ in kept], skipped=len(chunk) - len(kept))


def context(tmp_path: Path, kind: str, params, model, dataset: ImageDataset | None = None,
            *, batch_size: int = 16, seed: int = 0) -> TaskContext:
    """A task context as the executor builds it, storing artifacts under ``tmp_path``."""
    ctx = TaskContext(
        key=f"test-{kind}", kind=kind, params=params, seed=seed, sink=Store(tmp_path / "store"),
        batch_size=batch_size, load_model=lambda: model,
        load_dataset=(lambda: dataset) if dataset is not None else None,
        log=lambda _text: None,
    )
    ctx.run_pass = pass_runner(ctx)
    return ctx


def metrics(ctx: TaskContext, name: str, **dims) -> list:
    """The task's metric rows named ``name`` whose dimensions equal ``dims``."""
    return [m for m in ctx.result.metrics
            if m.name == name and all(getattr(m, k) == v for k, v in dims.items())]


def artifacts(ctx: TaskContext, role: str) -> list:
    return [a for a in ctx.result.artifacts if a.role == role]
