"""Canonical feature-site names, and plan-time checks of layers and feature indices.

Transformer sites are ``block{l}.mlp`` (the GELU output inside the feed-forward layer),
``block{l}.q`` / ``.k`` / ``.v`` (the attention projections, heads concatenated) and
``block{l}.out`` (the residual stream after the block); CNN sites are ``stage{s}``. This module
works on ``ModelInfo`` only and imports no torch, so kinds can call it in ``Kind.check``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from runner.errors import ModelError

if TYPE_CHECKING:
    from runner.models.base import ModelInfo

#: What a transformer block exposes, in the order ``format_sites`` lists them.
BLOCK_SITES = ("mlp", "q", "k", "v", "out")
_SITE_RE = re.compile(r"^(?:block(?P<block>\d+)\.(?P<what>mlp|q|k|v|out)|stage(?P<stage>\d+))$")


def site_name(layer: int, what: str = "mlp") -> str:
    """The canonical name of a site: ``block3.mlp``, ``block0.out``, ``stage2``."""
    if what == "stage":
        return f"stage{layer}"
    if what not in BLOCK_SITES:
        raise ModelError(f"unknown site kind {what!r}; expected one of {', '.join(BLOCK_SITES)}, "
                         "or 'stage' for CNNs")
    return f"block{layer}.{what}"


def parse_site(name: str) -> tuple[int, str]:
    """(layer, what) of a canonical site name; ModelError for anything else."""
    m = _SITE_RE.match(name)
    if not m:
        raise ModelError(f"{name!r} is not a site name; sites are block{{l}}.mlp, block{{l}}.q, "
                         "block{l}.k, block{l}.v, block{l}.out (transformers) or stage{s} (CNNs)")
    if m["stage"] is not None:
        return int(m["stage"]), "stage"
    return int(m["block"]), m["what"]


def check_sites(
    info: ModelInfo,
    layers: Iterable[int],
    what: str = "mlp",
    features: Iterable[int] | None = None,
) -> list[str]:
    """Validate layers (and feature indices) against a model; return the site names.

    ``what`` is a block site kind (``mlp``, ``q``, ``k``, ``v``, ``out``) or ``stage``; for a
    CNN, block site kinds fall back to its ``stage`` sites, which are what it has. Raises
    ``ModelError`` (a ``PlanError``) naming the model, the bad value and what exists.
    """
    layers = list(layers)
    if what != "stage" and not _has_blocks(info) and _has_stages(info):
        what = "stage"
    names = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise ModelError(f"layer {layer!r} is not an integer")
        name = site_name(layer, what)
        if name not in info.sites:
            raise ModelError(_missing_site_message(info, layer, what))
        names.append(name)
    if features is not None:
        for name in names:
            width = info.sites[name].n_features
            bad = [f for f in features if not 0 <= f < width]
            if bad:
                raise ModelError(
                    f"feature index {bad[0]} is out of range for site {name} of model "
                    f"{info.name}, which has {width} features (valid: 0..{width - 1})."
                )
    return names


def _has_blocks(info: ModelInfo) -> bool:
    return any(s.what != "stage" for s in info.sites.values())


def _has_stages(info: ModelInfo) -> bool:
    return any(s.what == "stage" for s in info.sites.values())


def _missing_site_message(info: ModelInfo, layer: int, what: str) -> str:
    layers = sorted({s.layer for s in info.sites.values()
                     if s.what == what and s.layer is not None})
    unit = "stage" if what == "stage" else "block"
    if not layers:
        kinds = sorted({s.what for s in info.sites.values()}, key=_what_order)
        return (f"model {info.name} has no {what!r} sites; it offers: {', '.join(kinds)} "
                f"(see `vitstudy sites`).")
    if layer in layers:  # pragma: no cover - defensive: name built from an existing layer
        return f"model {info.name} has no site {site_name(layer, what)}"
    return (f"{unit} {layer} does not exist in model {info.name}: its {what!r} sites are at "
            f"{unit}s {_ranges(layers)} (0-based; the paper's layer 12 is block 11).")


def _what_order(what: str) -> int:
    return BLOCK_SITES.index(what) if what in BLOCK_SITES else len(BLOCK_SITES)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0..2, 5``."""
    out, start, prev = [], None, None
    for v in values + [None]:
        if start is None:
            start = prev = v
        elif v is not None and v == prev + 1:
            prev = v
        else:
            out.append(str(start) if start == prev else f"{start}..{prev}")
            start = prev = v
    return ", ".join(out)


def format_sites(info: ModelInfo) -> str:
    """The table ``vitstudy sites`` prints: every site with its shape and feature count."""
    pre = info.preprocess
    outputs = (f"{info.num_classes} classes" if info.outputs == "logits" else
               f"{info.num_classes}-d embedding (no classifier: add `zero_shot:`)")
    lines = [
        f"{info.name}: depth {info.depth}, {outputs}, "
        f"{'CLS token' if info.has_cls_token else 'no CLS token'}",
        f"input {pre.size}x{pre.size}, crop_pct {pre.crop_pct:g}, {pre.interpolation}, "
        f"mean {_triple(pre.mean)}, std {_triple(pre.std)}",
        "",
    ]
    rows = [("site", "shape", "features", "prefix", "grid")]
    for site in sorted(info.sites.values(), key=lambda s: (s.layer or 0, _what_order(s.what))):
        gh, gw = site.grid
        if site.tokens:
            shape = f"(B, {site.prefix_tokens + gh * gw}, {site.n_features})"
        else:
            shape = f"(B, {site.n_features}, {gh}, {gw})"
        rows.append((site.name, shape, str(site.n_features), str(site.prefix_tokens),
                     f"{gh}x{gw}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1])]
                               + [r[i].rjust(widths[i]) for i in (2, 3, 4)]).rstrip())
    return "\n".join(lines)


def _triple(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
