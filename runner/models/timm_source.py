"""timm models: ViT, DeiT (distilled), ViTs with registers, Swin, PiT, ConViT, CoaT, Twins, CNNs.

Transformer blocks are found by structure (a module with an attention and an ``mlp`` holding
an activation), so every timm family built from such blocks gets ``block{l}`` sites, numbered
through all stages; CNNs get ``stage{s}`` sites from timm's ``feature_info``. Plain
``VisionTransformer``s (incl. DeiT distilled and register models) also get ``ViTParts``.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from runner.errors import ModelError, close_matches
from runner.models.base import ViTParts
from runner.models.errors import unknown_model
from runner.models.hooked import Block, SiteRead, qkv_chunk
from runner.models.preprocess import from_timm_config, with_overrides
from runner.models.structure import Structure, seeded
from runner.models.weights import Adapt, load_weights, require_hub, require_url

if TYPE_CHECKING:
    from runner.models.hooked import HookedModel
    from runner.models.sources import Init
    from runner.schema import ModelSpec

_HUB_FILES = ["model.safetensors", "pytorch_model.bin"]


def build(spec: ModelSpec, init: Init, weights_file: Path | None,
          base_dir: Path | None = None) -> tuple[nn.Module, None]:
    """The timm module; ``init``: 'meta' (shapes only), 'random', 'pretrained' or 'file'."""
    import timm

    name, arch, _ = _full_name(spec)
    if not timm.is_model(arch):
        raise unknown_model("timm", arch, timm.list_models(), "List them with "
                            "`python -c \"import timm; print(timm.list_models())\"`.")
    _check_tag(spec)
    kwargs = dict(spec.kwargs)
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    try:
        if init == "meta":
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs), None
        if init == "pretrained":
            path = locate_pretrained(spec)
            overlay = {"file": str(path)} if path is not None else {}
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                                     **kwargs), None
        if init == "file" and weights_file is not None and weights_file.suffix == ".npz":
            # original JAX checkpoints: timm's own loader converts them
            return timm.create_model(name, pretrained=True, **kwargs,
                                     pretrained_cfg_overlay={"file": str(weights_file)}), None
        with seeded():
            net = timm.create_model(name, pretrained=False, **kwargs)
        if init == "file" and weights_file is not None:
            load_weights(net, weights_file, name, adapt=_checkpoint_filter(net))
        return net, None
    except TypeError as e:  # a constructor keyword the architecture does not take
        raise ModelError(f"timm model {name} rejects its kwargs {spec.kwargs}: {e}",
                         field="kwargs") from e


def _full_name(spec: ModelSpec) -> tuple[str, str, str]:
    """(name with tag, architecture, tag) of a timm entry; ``pretrained: TAG`` adds the tag."""
    from timm.models import split_model_name_tag

    name = spec.arch if spec.source == "checkpoint" else spec.name
    arch, tag = split_model_name_tag(name)
    if not tag and isinstance(spec.pretrained, str) and spec.source == "timm":
        name, tag = f"{arch}.{spec.pretrained}", spec.pretrained
    return name, arch, tag


def locate_pretrained(spec: ModelSpec) -> Path | None:
    """The cached pretrained weights file; None when it must be (and can be) downloaded.

    ModelError when the tag does not exist, or the weights are neither cached nor reachable.
    """
    from timm.models import get_pretrained_cfg

    name = _full_name(spec)[0]
    _check_tag(spec)
    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.file or cfg.hf_hub_id or cfg.url):
        raise ModelError(f"timm model {name} has no pretrained weights; use `pretrained: false` "
                         "or give a local file with `weights:`.")
    if cfg.file:
        return Path(cfg.file)
    if cfg.hf_hub_id:
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else _HUB_FILES
        return require_hub(f"{name} (timm)", cfg.hf_hub_id, files)
    return require_url(f"{name} (timm)", cfg.url, Path(torch.hub.get_dir()) / "checkpoints")


def _check_tag(spec: ModelSpec) -> None:
    """ModelError unless the entry's tag (if any) is one of timm's pretrained tags of its
    architecture, with the closest tags suggested; timm's own registry answers, offline."""
    import timm

    _, arch, tag = _full_name(spec)
    if not tag:
        return
    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{arch}.*")]
    if tag in tags:
        return
    guess = close_matches(tag, tags, n=3)
    hint = f" Did you mean: {', '.join(guess)}?" if guess else ""
    raise ModelError(f"timm model {arch} has no pretrained tag {tag!r}; its tags are: "
                     f"{', '.join(tags) or 'none'}.{hint}",
                     field="pretrained" if tag == spec.pretrained else "name")


def _checkpoint_filter(net: nn.Module) -> Adapt | None:
    """The model family's converter for foreign checkpoint layouts, if timm has one."""
    fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    return None if fn is None else (lambda state, model: fn(state, model))


def structure(net: nn.Module, spec: ModelSpec, base_dir: Path | None = None) -> Structure:
    """Where a timm module's sites are and how its input is preprocessed."""
    from timm.data import resolve_data_config

    img_size = spec.kwargs.get("img_size")
    if isinstance(img_size, (list, tuple)):
        img_size = img_size[-1]
    pre = with_overrides(from_timm_config(resolve_data_config({}, model=net), img_size),
                         spec.preprocess)
    blocks = find_blocks(net)
    if not blocks:
        return Structure(preprocess=pre, stages=_cnn_stages(net))
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    return Structure(
        preprocess=pre,
        blocks=blocks,
        max_prefix=_max_prefix(net),
        known_grid=tuple(grid) if grid is not None else None,
        has_cls_token=any(n.startswith("cls_token") for n, _ in net.named_parameters()),
        parts=TimmViTParts if _is_plain_vit(net) else None,
    )


def find_blocks(net: nn.Module) -> list[Block]:
    """Transformer blocks in forward order: modules with an attention and an ``mlp`` with an act."""
    blocks: list[Block] = []
    for path, module in net.named_modules():
        if blocks and path.startswith(blocks[-1].path + "."):
            continue  # inside the block just found
        mlp = getattr(module, "mlp", None)
        if not isinstance(mlp, nn.Module) or not any(
            isinstance(getattr(module, a, None), nn.Module) for a in ("attn", "factoratt_crpe")
        ):
            continue
        act = next((a for a in ("act", "gelu") if isinstance(getattr(mlp, a, None), nn.Module)),
                   None)
        qkv = getattr(getattr(module, "attn", None), "qkv", None)
        blocks.append(Block(
            path=path,
            module=module,
            mlp_act=f"{path}.mlp.{act}" if act else None,
            qkv=(f"{path}.attn.qkv", False, _qkv_reader) if isinstance(qkv, nn.Linear) else None,
            mlp_linear=f"{path}.mlp.fc1" if isinstance(getattr(mlp, "fc1", None), nn.Linear)
            else None,
        ))
    return blocks


def _qkv_reader(index: int) -> SiteRead:
    return partial(qkv_chunk, index)


def _max_prefix(net: nn.Module) -> int:
    """The most prefix tokens any block of ``net`` can carry (CLS, distillation, registers)."""
    n = int(getattr(net, "num_prefix_tokens", 0) or 0)
    for name, p in net.named_parameters():
        if name.startswith(("cls_token", "dist_token")) and p.ndim == 3:
            n = max(n, p.shape[1])
    return max(n, 1)


def _cnn_stages(net: nn.Module) -> list[str]:
    info = getattr(net, "feature_info", None)
    modules = [f.get("module") for f in info] if isinstance(info, list) else []
    if modules and all(isinstance(m, str) and _has_path(net, m) for m in modules):
        return modules
    return []  # the loader then finds stages by resolution


def _has_path(net: nn.Module, path: str) -> bool:
    try:
        net.get_submodule(path)
        return True
    except AttributeError:
        return False


def _is_plain_vit(net: nn.Module) -> bool:
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    return type(net) in (VisionTransformer, VisionTransformerDistilled) and net.attn_pool is None


class TimmViTParts(ViTParts):
    """Token surgery on timm's ``VisionTransformer`` (class, distillation and register tokens)."""

    def __init__(self, model: HookedModel) -> None:
        self._model = model
        net = model.net
        self.depth = len(net.blocks)
        self.num_prefix_tokens = int(net.num_prefix_tokens)
        self.cls_index = 0 if net.cls_token is not None else None
        self._distilled = hasattr(net, "head_dist")

    def embed(self, x01: torch.Tensor) -> torch.Tensor:
        net = self._model.net
        x = net.patch_embed(self._model.normalize(x01))
        x = net._pos_embed(x)
        x = net.patch_drop(x)
        return net.norm_pre(x)

    def run_blocks(self, tokens: torch.Tensor, start: int, end: int) -> torch.Tensor:
        _check_range(start, end, self.depth)
        for block in self._model.net.blocks[start:end]:
            tokens = block(tokens)
        return tokens

    def pool_head(self, tokens: torch.Tensor) -> torch.Tensor:
        net = self._model.net
        return self._model.head(net.forward_head(net.norm(tokens)))

    def token_head(self, tokens: torch.Tensor) -> torch.Tensor:
        net = self._model.net
        t = net.norm(tokens)
        if self._distilled:  # DeiT's prediction averages its two heads
            logits = (net.head(net.head_drop(t)) + net.head_dist(net.head_drop(t))) / 2
        else:
            logits = net.head(net.head_drop(net.fc_norm(t)))
        return self._model.head(logits)


def _check_range(start: int, end: int, depth: int) -> None:
    if not 0 <= start <= end <= depth:
        raise ValueError(f"block range [{start}, {end}) is not within [0, {depth}]")
