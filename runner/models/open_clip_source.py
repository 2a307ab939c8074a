"""open_clip models: the image tower is the model; a zero-shot head makes CLIP a classifier.

Weights come by pretrained tag (from the Hugging Face cache, QuickGELU switched on when the tag
was trained with it, as OpenAI's were) or from a local file. With ``zero_shot:``, class-name
prompts through the text tower give a (embed, classes) matrix, and the model's logits are
``logit_scale * normalize(image embedding) @ matrix``; the text tower is then dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import ModelError
from runner.models.base import ViTParts
from runner.models.errors import unknown_model
from runner.models.hooked import Block, SiteRead, in_proj_chunk
from runner.models.identity import cache_dir, model_identity, resolve_path
from runner.models.preprocess import from_open_clip_config, with_overrides
from runner.models.structure import Structure, seeded
from runner.models.timm_source import find_blocks
from runner.models.weights import require_hub, require_url

if TYPE_CHECKING:
    from runner.models.hooked import HookedModel
    from runner.models.sources import Init
    from runner.schema import ModelSpec, ZeroShotHead

_HUB_FILES = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


class ZeroShotClassifier(nn.Module):
    """CLIP's zero-shot logits: scaled cosine similarity to one text embedding per class."""

    def __init__(self, class_embeddings: torch.Tensor, logit_scale: float) -> None:
        super().__init__()
        self.register_buffer("weight", class_embeddings)  # (embed, classes), unit columns
        self.logit_scale = float(logit_scale)

    def forward(self, image_embedding: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(image_embedding, dim=-1) @ self.weight


def build(spec: ModelSpec, init: Init, weights_file: Path | None,
          base_dir: Path | None = None) -> tuple[nn.Module, nn.Module | None]:
    """The image tower (and zero-shot head); ``init``: 'meta', 'random', 'pretrained', 'file'."""
    import open_clip

    name = spec.name
    if not name.startswith(("hf-hub:", "local-dir:")) and name not in open_clip.list_models():
        raise unknown_model("open_clip", name, open_clip.list_models())
    common = dict(pretrained_image=False, pretrained_text=False, **spec.kwargs)
    if init == "meta":
        with torch.device("meta"), _no_random_init_warning():
            model = open_clip.create_model(name, pretrained=None, device="meta", **common)
        return model.visual, None
    if init == "random":
        with seeded(), _no_random_init_warning():
            model = open_clip.create_model(name, pretrained=None, **common)
    elif init == "file":
        model = _from_file(open_clip, name, weights_file, common)
    else:
        tag, cached = locate_pretrained(spec)
        if Path(tag).is_file():
            model = _from_file(open_clip, name, Path(tag), common)
        else:
            quick_gelu = bool(open_clip.get_pretrained_cfg(name, tag).get("quick_gelu"))
            with _hub_offline() if cached else contextlib.nullcontext():
                model = open_clip.create_model(name, pretrained=tag, **common,
                                               force_quick_gelu=quick_gelu)
    head = _zero_shot_head(model, spec, base_dir) if spec.zero_shot is not None else None
    return model.visual, head


def _from_file(open_clip: ModuleType, name: str, path: Path, common: dict[str, Any]
               ) -> nn.Module:
    """A CLIP model with a full checkpoint file (image and text towers) loaded strictly."""
    try:
        return open_clip.create_model(name, pretrained=str(path), **common)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:400]
        raise ModelError(f"weights file {path} does not fit open_clip model {name}: {detail}. "
                         "OpenAI checkpoints need a -quickgelu model name.") from e


def locate_pretrained(spec: ModelSpec) -> tuple[str, bool]:
    """(tag or file to load, whether it is in the local cache); ModelError if it cannot be had."""
    import open_clip

    name, tag = spec.name, spec.pretrained
    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag is True:
        raise ModelError(f"open_clip model {name} needs a pretrained tag (`pretrained: TAG`) or "
                         f"a file; its tags are: {', '.join(tags) or 'none'}.")
    if tag not in tags:
        path = Path(tag).expanduser()
        if path.is_file():
            return str(path), True
        raise ModelError(f"open_clip model {name} has no pretrained tag {tag!r} and no such file "
                         f"exists; its tags are: {', '.join(tags) or 'none'}.")
    cfg = open_clip.get_pretrained_cfg(name, tag)
    desc = f"{name} / {tag} (open_clip)"
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file"
        return tag, require_hub(desc, repo, [filename] if filename else _HUB_FILES) is not None
    if cfg.get("url"):
        return tag, require_url(desc, cfg["url"], Path("~/.cache/clip").expanduser()) is not None
    raise ModelError(f"open_clip model {name} / {tag} names no weights to download")


@contextlib.contextmanager
def _no_random_init_warning() -> Iterator[None]:
    """Silence open_clip's root-logger warning that a random-init model is random."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub use its cache without asking the network (weights already cached)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _zero_shot_head(model: nn.Module, spec: ModelSpec, base_dir: Path | None) -> nn.Module:
    """The zero-shot classifier, cached on disk by model identity (which covers the prompts)."""
    cache = cache_dir() / "zero_shot" / (
        hashlib.sha256(model_identity(spec, base_dir).encode()).hexdigest()[:32] + ".pt")
    if cache.is_file():
        weight = torch.load(cache, map_location="cpu", weights_only=True)
    else:
        weight = _zero_shot_weight(model, spec, class_names(spec.zero_shot, base_dir))
        with contextlib.suppress(OSError):  # a read-only cache only costs recomputing
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            torch.save(weight, tmp)
            os.replace(tmp, cache)
    return ZeroShotClassifier(weight, model.logit_scale.exp().item())


def _zero_shot_weight(model: nn.Module, spec: ModelSpec, names: list[str]) -> torch.Tensor:
    """(embed, classes): the normalized mean prompt embedding of each class name."""
    import open_clip
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    templates = (OPENAI_IMAGENET_TEMPLATES if spec.zero_shot.templates == "openai"
                 else SIMPLE_IMAGENET_TEMPLATES)
    tokenizer = open_clip.get_tokenizer(spec.name)
    model.eval()
    return open_clip.build_zero_shot_classifier(model, tokenizer, names, templates,
                                                num_classes_per_batch=10)


def class_names(zs: ZeroShotHead, base_dir: Path | None) -> list[str]:
    """The zero-shot class names: open_clip's ImageNet list or a file, one name per line."""
    if zs.classnames == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)
    path = resolve_path(zs.classnames, base_dir)
    try:
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise ModelError(f"cannot read zero-shot class names {path}: {e.strerror or e}") from e
    if not names:
        raise ModelError(f"zero-shot class-name file {path} is empty")
    return names


def structure(net: nn.Module, spec: ModelSpec, base_dir: Path | None = None) -> Structure:
    """Sites of the image tower: ``transformer.resblocks.{l}`` of a ViT, stages of a ResNet."""
    from open_clip.transformer import VisionTransformer

    pre = with_overrides(from_open_clip_config(_preprocess_cfg(net, spec)), spec.preprocess)
    num_classes = len(class_names(spec.zero_shot, base_dir)) if spec.zero_shot else None
    outputs = "logits" if spec.zero_shot else "embedding"
    if isinstance(net, VisionTransformer):
        seq_first = not net.transformer.batch_first
        blocks = []
        for i, blk in enumerate(net.transformer.resblocks):
            path = f"transformer.resblocks.{i}"
            qkv = None
            if isinstance(blk.attn, nn.MultiheadAttention) and blk.attn._qkv_same_embed_dim:
                qkv = (f"{path}.attn", True, partial(_in_proj_reader, seq_first))
            act = next((a for a in ("gelu", "act") if hasattr(blk.mlp, a)), None)
            linear = f"{path}.mlp.c_fc" if hasattr(blk.mlp, "c_fc") else None
            blocks.append(Block(path, blk, f"{path}.mlp.{act}" if act else None, qkv, linear))
        plain = net.attn_pool is None
        return Structure(preprocess=pre, blocks=blocks, max_prefix=1,
                         known_grid=tuple(net.grid_size), sequence_first=seq_first,
                         has_cls_token=True, parts=OpenClipViTParts if plain else None,
                         num_classes=num_classes, outputs=outputs)
    blocks = find_blocks(net)  # timm towers and other transformer variants
    if blocks:
        return Structure(preprocess=pre, blocks=blocks, num_classes=num_classes, outputs=outputs)
    return Structure(preprocess=pre, stages=[], num_classes=num_classes, outputs=outputs)


def _preprocess_cfg(net: nn.Module, spec: ModelSpec) -> dict[str, Any]:
    """The tower's preprocessing config with the pretrained tag's own values merged in."""
    import open_clip

    cfg = dict(net.preprocess_cfg)
    tag = spec.pretrained
    if isinstance(tag, str) and not spec.weights and tag in open_clip.list_pretrained_tags_by_model(
            spec.name):
        tag_cfg = open_clip.get_pretrained_cfg(spec.name, tag)
        cfg.update({k: tag_cfg[k] for k in ("mean", "std", "interpolation") if k in tag_cfg})
    return cfg


def _in_proj_reader(transposed: bool, index: int) -> SiteRead:
    return partial(in_proj_chunk, index, transposed)


class OpenClipViTParts(ViTParts):
    """Token surgery on open_clip's ``VisionTransformer`` (CLS token at index 0)."""

    def __init__(self, model: HookedModel) -> None:
        self._model = model
        visual = model.net
        self.depth = len(visual.transformer.resblocks)
        self.num_prefix_tokens = 1
        self.cls_index = 0
        self._seq_first = not visual.transformer.batch_first

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        return self._model.net._embeds(self._model.normalize(x01))

    def run_blocks(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        if not 0 <= start <= end <= self.depth:
            raise ValueError(f"block range [{start}, {end}) is not within [0, {self.depth}]")
        x = tokens.transpose(0, 1) if self._seq_first else tokens
        for block in self._model.net.transformer.resblocks[start:end]:
            x = block(x)
        return x.transpose(0, 1) if self._seq_first else x

    def pool_head(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self._model.net
        pooled, _ = visual._pool(tokens)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return self._model.head(pooled)

    def token_head(self, tokens: torch.Tensor) -> torch.Tensor:
        visual = self._model.net
        t = visual.ln_post(tokens)
        if visual.proj is not None:
            t = t @ visual.proj
        return self._model.head(t)
