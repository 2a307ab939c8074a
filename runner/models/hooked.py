"""The one ``LoadedModel`` implementation: a library module behind normalization and hooks.

Every source (timm, open_clip, torchvision) builds its library module and a table of
``SiteReader``s: which submodule to hook and how to turn its output into the canonical site
layout. Capturing registers forward hooks for the requested sites only and, with
``stop_early``, aborts the forward as soon as the last of them has been read, so reading
``block0.mlp`` of a ViT costs one block, not the whole network. Activations keep their graph.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import ModelError
from runner.models.base import (
    FeatureRead,
    LoadedModel,
    ModelInfo,
    Preprocess,
    SiteInfo,
    ViTParts,
    batch_rows,
)

#: Turns a hooked module's output (or first input) into the site's canonical layout.
SiteRead = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SiteReader:
    """How to read a site: hook ``module`` (its output, or its first input) and apply ``read``.

    ``linear``: for a feed-forward site, the ``nn.Linear`` whose output ``module`` (an
    elementwise activation) is applied to, checked on a probe forward; reading a few channels
    then hooks that layer's input and computes only those channels.
    """

    module: str  # dotted path inside the library module
    read: SiteRead
    on_input: bool = False
    linear: str | None = None


class _StopForward(Exception):
    """Raised by a capture hook once every requested site has been read."""


class HookedModel(LoadedModel):
    """[0, 1] images in, logits out; the library module is ``net``, sites are read by hooks."""

    def __init__(
        self,
        net: nn.Module,
        *,
        info: ModelInfo,
        readers: dict[str, SiteReader],
        model_id: str,
        head: nn.Module | None = None,
        parts: Callable[[HookedModel], ViTParts] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head if head is not None else nn.Identity()
        self.info = info
        self.model_id = model_id
        self._readers = readers
        self._parts_factory = parts
        self._parts: ViTParts | None = None
        pre = info.preprocess
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """The model's own normalization of a [0, 1] image batch."""
        return (x01 - self.mean) / self.std

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(self.normalize(x01)))

    def capture(
        self, x01: torch.Tensor, sites: Sequence[str], *, stop_early: bool = True
    ) -> dict[str, torch.Tensor]:
        """Activations at ``sites``; with ``stop_early`` the forward ends after the deepest one."""
        wanted = list(dict.fromkeys(sites))
        self._check_sites(wanted)
        taps = {name: (self._readers[name].module, self._readers[name].on_input)
                for name in wanted}
        return self._forward_taps(x01, taps, stop_early=stop_early)

    def read_features(
        self, x01: torch.Tensor, reads: Sequence[FeatureRead], *, truncated: bool = True
    ) -> list[torch.Tensor]:
        """One channel per row (see ``LoadedModel.read_features``). Truncated, a feed-forward
        site with a known ``linear`` is read at that layer's input, so the forward stops before
        it and only the channels read are computed: (rows, D) x (D,) each, not (D, 4D)."""
        from runner.ops.activation import linear_features, pick_features

        wanted = list(dict.fromkeys(r.site for r in reads))
        self._check_sites(wanted)
        fast = {name for name in wanted if truncated and self._readers[name].linear}
        taps = {name: ((self._readers[name].linear, True) if name in fast else
                       (self._readers[name].module, self._readers[name].on_input))
                for name in wanted}
        found = self._forward_taps(x01, taps, stop_early=truncated)
        out = []
        for r in reads:
            reader, value = self._readers[r.site], batch_rows(found[r.site], r.rows)
            if r.site in fast:
                linear = self.net.get_submodule(reader.linear)
                act = self.net.get_submodule(reader.module)
                out.append(act(linear_features(value, linear.weight, linear.bias, r.features)))
            else:
                out.append(pick_features(value, r.features, self.info.sites[r.site].tokens))
        return out

    def _check_sites(self, names: Sequence[str]) -> None:
        unknown = [s for s in names if s not in self._readers]
        if unknown:
            raise ModelError(
                f"model {self.info.name} has no site {unknown[0]!r}; it has "
                f"{_summarize(self._readers)} (see `vitstudy sites`)."
            )

    def _forward_taps(self, x01: torch.Tensor, taps: dict[str, tuple[str, bool]], *,
                      stop_early: bool) -> dict[str, torch.Tensor]:
        """Run the forward with a hook per tap (site -> (module path, on its input?)); each
        site's value is its reader's ``read`` of what the hook saw. With ``stop_early`` the
        forward ends once every tap has fired."""
        if not taps:
            return {}
        groups: dict[tuple[str, bool], list[str]] = {}
        for name, tap in taps.items():
            groups.setdefault(tap, []).append(name)
        found: dict[str, torch.Tensor] = {}

        def hook(names: list[str], on_input: bool, module: nn.Module, args, output=None):
            value = args[0] if on_input else output
            for name in names:
                if name not in found:
                    found[name] = self._readers[name].read(module, value)
            if stop_early and len(found) == len(taps):
                raise _StopForward

        handles = []
        try:
            for (path, on_input), names in groups.items():
                module = self.net.get_submodule(path)
                fn = partial(hook, names, on_input)
                handles.append(module.register_forward_pre_hook(fn) if on_input
                               else module.register_forward_hook(fn))
            with contextlib.suppress(_StopForward):
                self.forward(x01)
        finally:
            for h in handles:
                h.remove()
        missing = [s for s in taps if s not in found]
        if missing:
            raise RuntimeError(f"the forward of {self.info.name} never reached {missing}")
        return {s: found[s] for s in taps}

    @property
    def vit(self) -> ViTParts | None:
        if self._parts is None and self._parts_factory is not None:
            self._parts = self._parts_factory(self)
        return self._parts


def _summarize(readers: Iterable[str]) -> str:
    names = list(readers)
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


# ----------------------------------------------------------------------- site read functions


def as_is(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """Tokens already (B, T, C), or a CNN map already (B, C, H, W)."""
    return t


def seq_first(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """(T, B, C) -> (B, T, C), for transformers that run sequence-first."""
    return t.transpose(0, 1)


def nhwc_tokens(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, H*W, C), e.g. Swin's block output."""
    return t.flatten(1, 2)


def nchw_tokens(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return t.flatten(2).transpose(1, 2)


def qkv_chunk(index: int, module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """q, k or v (index 0, 1, 2) from a fused (B, T, 3C) projection output, heads concatenated."""
    return t.chunk(3, dim=-1)[index]


def in_proj_chunk(
    index: int, transposed: bool, module: nn.Module, x: torch.Tensor
) -> torch.Tensor:
    """q, k or v from ``nn.MultiheadAttention``'s packed input projection, applied to its input."""
    rows = slice(index * module.embed_dim, (index + 1) * module.embed_dim)
    b = None if module.in_proj_bias is None else module.in_proj_bias[rows]
    w = module.in_proj_weight[rows]
    out = F.linear(x, w, b)
    return out.transpose(0, 1) if transposed else out


# ------------------------------------------------------------------------- site discovery


def probe(
    net: nn.Module, x: torch.Tensor, targets: Iterable[tuple[str, bool]]
) -> tuple[dict[tuple[str, bool], torch.Tensor], torch.Tensor]:
    """Run ``net`` once and keep each target's output (or first input), and the net's output."""
    seen: dict[tuple[str, bool], torch.Tensor] = {}
    handles = []

    def keep(key: tuple[str, bool], module: nn.Module, args, output=None) -> None:
        if key not in seen:
            seen[key] = args[0] if key[1] else output

    try:
        for key in dict.fromkeys(targets):
            module = net.get_submodule(key[0])
            fn = partial(keep, key)
            handles.append(module.register_forward_pre_hook(fn) if key[1]
                           else module.register_forward_hook(fn))
        with torch.no_grad():
            out = net(x)
    finally:
        for h in handles:
            h.remove()
    return seen, out


def split_tokens(
    n_tokens: int, image_hw: tuple[int, int], max_prefix: int, known_grid: tuple[int, int] | None
) -> tuple[int, tuple[int, int]]:
    """(prefix tokens, patch grid) of a token sequence: patch tokens tile the image's aspect."""
    if known_grid is not None:
        extra = n_tokens - known_grid[0] * known_grid[1]
        if 0 <= extra <= max(max_prefix, 8):
            return extra, tuple(known_grid)
    for prefix in range(min(max_prefix, n_tokens - 1), -1, -1):
        grid = _grid_of(n_tokens - prefix, image_hw)
        if grid is not None:
            return prefix, grid
    raise ModelError(f"cannot lay out {n_tokens} tokens on a patch grid for a "
                     f"{image_hw[0]}x{image_hw[1]} input")


def _grid_of(n: int, image_hw: tuple[int, int]) -> tuple[int, int] | None:
    if n <= 0:
        return None
    h, w = image_hw
    stride = math.sqrt(h * w / n)
    gh, gw = max(1, round(h / stride)), max(1, round(w / stride))
    return (gh, gw) if gh * gw == n else None


@dataclass(frozen=True)
class Block:
    """A transformer block of a library model, as site discovery needs it."""

    path: str
    module: nn.Module
    mlp_act: str | None  # path of the feed-forward activation module
    qkv: tuple[str, bool, Callable[[int], SiteRead]] | None  # (path, on_input, reader factory)
    mlp_linear: str | None = None  # the nn.Linear feeding ``mlp_act``, if it is one (checked)


def transformer_sites(
    net: nn.Module,
    blocks: Sequence[Block],
    x: torch.Tensor,
    *,
    max_prefix: int,
    known_grid: tuple[int, int] | None = None,
    sequence_first: bool = False,
) -> tuple[dict[str, SiteInfo], dict[str, SiteReader], torch.Tensor]:
    """Sites of every block (mlp, q, k, v, out) with their layouts, found by one probe forward.

    Returns the site infos, the readers, and the probe's output (for the class count).
    """
    seen, out = probe(net, x, _block_targets(blocks))
    table = _SiteTable(net, (x.shape[-2], x.shape[-1]), max_prefix, known_grid)
    for layer, b in enumerate(blocks):
        _add_block_sites(table, layer, b, seen, sequence_first)
    return table.infos, table.readers, out


def _block_targets(blocks: Sequence[Block]) -> list[tuple[str, bool]]:
    """What the probe hooks, as (path, on_input): each block's output, its feed-forward
    activation and the linear feeding it (its input), and its fused q/k/v projection."""
    targets = []
    for b in blocks:
        targets.append((b.path, False))
        if b.mlp_act:
            targets.append((b.mlp_act, False))
        if b.mlp_act and b.mlp_linear:
            targets.append((b.mlp_linear, True))
        if b.qkv:
            targets.append((b.qkv[0], b.qkv[1]))
    return targets


@dataclass
class _SiteTable:
    """The sites found so far, each laid out (prefix tokens, patch grid) from a probe value."""

    net: nn.Module
    image_hw: tuple[int, int]
    max_prefix: int
    known_grid: tuple[int, int] | None
    infos: dict[str, SiteInfo] = field(default_factory=dict)
    readers: dict[str, SiteReader] = field(default_factory=dict)

    def add(self, name: str, layer: int, what: str, reader: SiteReader,
            value: torch.Tensor) -> None:
        t = reader.read(self.net.get_submodule(reader.module), value)
        prefix, grid = split_tokens(t.shape[1], self.image_hw, self.max_prefix, self.known_grid)
        self.infos[name] = SiteInfo(name=name, layer=layer, what=what, n_features=t.shape[-1],
                                    prefix_tokens=prefix, grid=grid, tokens=True)
        self.readers[name] = reader


def _add_block_sites(table: _SiteTable, layer: int, b: Block,
                     seen: dict[tuple[str, bool], torch.Tensor], sequence_first: bool) -> None:
    """Block ``layer``'s sites, in order mlp, q, k, v, out, read as the probe saw them."""
    net = table.net
    three_d = seq_first if sequence_first else as_is
    out_t = seen[(b.path, False)]
    act_t = seen.get((b.mlp_act, False)) if b.mlp_act else None
    n_tokens = None
    if act_t is not None and act_t.ndim == 3:
        n_tokens = act_t.shape[0 if sequence_first else 1]
    if out_t.ndim == 4:
        hw_last = out_t.shape[1] * out_t.shape[2]
        out_read = nhwc_tokens if n_tokens in (None, hw_last) else nchw_tokens
    else:
        out_read = three_d
    if act_t is not None and act_t.ndim in (3, 4):
        act_read = three_d if act_t.ndim == 3 else nchw_tokens
        linear = None
        if b.mlp_linear and feeds_activation(
                net.get_submodule(b.mlp_linear), net.get_submodule(b.mlp_act),
                seen.get((b.mlp_linear, True)), act_t):
            linear = b.mlp_linear
        table.add(f"block{layer}.mlp", layer, "mlp",
                  SiteReader(b.mlp_act, act_read, linear=linear), act_t)
    if b.qkv is not None and (b.qkv[0], b.qkv[1]) in seen:  # some call F.linear directly
        path, on_input, make = b.qkv
        value = seen[(path, on_input)]
        q = make(0)(net.get_submodule(path), value)
        ref = out_read(b.module, out_t)
        if q.ndim == 3 and q.shape[:2] == ref.shape[:2]:  # not windowed: one row per token
            for i, what in enumerate("qkv"):
                table.add(f"block{layer}.{what}", layer, what,
                          SiteReader(path, make(i), on_input), value)
    table.add(f"block{layer}.out", layer, "out", SiteReader(b.path, out_read), out_t)


def feeds_activation(linear: nn.Module, act: nn.Module, linear_input: torch.Tensor | None,
                     act_output: torch.Tensor) -> bool:
    """Whether a probe's feed-forward activation output is ``act(linear(input))`` with
    ``linear`` an ``nn.Linear``: then one channel can be computed from the linear's input."""
    if not isinstance(linear, nn.Linear) or linear_input is None or linear_input.ndim != 3:
        return False
    if act_output.shape != (*linear_input.shape[:-1], linear.out_features):
        return False
    if act_output.is_meta:  # no values to compare: never claim what cannot be verified
        return False
    with torch.no_grad():
        recomputed = act(F.linear(linear_input, linear.weight, linear.bias))
    return torch.allclose(recomputed, act_output, rtol=1e-4, atol=1e-5)


def stage_sites(
    net: nn.Module, stage_paths: Sequence[str], x: torch.Tensor
) -> tuple[dict[str, SiteInfo], dict[str, SiteReader], torch.Tensor]:
    """``stage{s}`` sites of a CNN: the (B, C, H, W) outputs of the given modules."""
    seen, out = probe(net, x, [(p, False) for p in stage_paths])
    infos, readers = {}, {}
    for s, path in enumerate(stage_paths):
        t = seen[(path, False)]
        name = f"stage{s}"
        infos[name] = SiteInfo(name=name, layer=s, what="stage", n_features=t.shape[1],
                               prefix_tokens=0, grid=(t.shape[2], t.shape[3]), tokens=False)
        readers[name] = SiteReader(path, as_is)
    return infos, readers, out


def resolution_stages(net: nn.Module, children: Sequence[tuple[str, nn.Module]],
                      x: torch.Tensor) -> list[str]:
    """For a CNN whose top-level children run in order: the last child at each resolution."""
    seen, _ = probe(net, x, [(path, False) for path, _ in children])
    stages: list[str] = []
    last_hw = None
    for path, _ in children:
        t = seen.get((path, False))
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            continue
        hw = tuple(t.shape[2:])
        if stages and hw == last_hw:
            stages[-1] = path
        else:
            stages.append(path)
        last_hw = hw
    return stages


def model_info(
    name: str, sites: dict[str, SiteInfo], logits: torch.Tensor, preprocess: Preprocess,
    *, has_cls_token: bool, num_classes: int | None = None, outputs: str = "logits",
) -> ModelInfo:
    """A ``ModelInfo`` from discovered sites and a probe's logits."""
    layers = {s.layer for s in sites.values() if s.layer is not None}
    return ModelInfo(name=name, num_classes=num_classes or int(logits.shape[-1]),
                     depth=len(layers), has_cls_token=has_cls_token, sites=sites,
                     preprocess=preprocess, outputs=outputs)
