"""What an evaluation can read from one forward of a model, and how each is computed.

A readout is a small frozen value (hashable, so equal requests merge): the logits, the head on
each patch token, the logits with CLS isolated up to a layer, a site's activations. The fused
pass collects every readout its tasks want of one input and computes them here with one shared
forward; a readout that cannot be computed fails alone, so only the tasks asking for it fail.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch

from runner.models.base import LoadedModel, ViTParts
from runner.models.tokens import isolated_logits, patch_token_logits


@dataclass(frozen=True)
class Logits:
    """(B, classes): the model's logits."""


@dataclass(frozen=True)
class TokenLogits:
    """(B, N, classes): the classification head (final norm + classifier) on each patch token
    alone, prefix tokens left out, row-major over the patch grid. ViTs only."""


@dataclass(frozen=True)
class MeanTokenLogits:
    """(B, classes): the classifier on the mean of the final-normed patch tokens, which is the
    mean of ``TokenLogits`` over positions (the classifier is linear). ViTs only."""


@dataclass(frozen=True)
class IsolatedLogits:
    """(B, classes): the logits with CLS isolated through blocks [0, layer). ViTs only."""

    layer: int


@dataclass(frozen=True)
class Activations:
    """A model site's activations as ``LoadedModel.capture`` gives them (``block3.mlp``)."""

    site: str


Readout = Logits | TokenLogits | MeanTokenLogits | IsolatedLogits | Activations

LOGITS = Logits()
TOKEN_LOGITS = TokenLogits()
MEAN_TOKEN_LOGITS = MeanTokenLogits()
_PATCH_HEADS = (TOKEN_LOGITS, MEAN_TOKEN_LOGITS)

Values = dict[Readout, torch.Tensor]
Failures = dict[Readout, BaseException]


def compute_readouts(
    model: LoadedModel, x: torch.Tensor, readouts: Collection[Readout]
) -> tuple[Values, Failures]:
    """Every requested readout of one model input, sharing the forward between them.

    Returns (values, failures): a readout that cannot be computed (a token readout on a model
    without ``ViTParts``, an unknown site, a layer past the depth) fails alone.
    """
    wanted = set(readouts)
    values: Values = {}
    failures: Failures = {r: ValueError(f"unknown readout {r!r}") for r in wanted
                          if not isinstance(r, Readout)}
    token_readouts = {r for r in wanted if isinstance(r, TokenLogits | MeanTokenLogits
                                                      | IsolatedLogits)}
    vit = model.vit
    if vit is None:
        if LOGITS in wanted:
            _guard(values, failures, [LOGITS], lambda: {LOGITS: model(x)})
        for readout in token_readouts:
            failures[readout] = ValueError(
                f"readout {readout!r} needs token access (ViTParts); "
                f"model {model.info.name!r} has none")
    elif LOGITS in wanted or token_readouts:
        _token_readouts(vit, x, wanted, values, failures)
    sites = sorted({r.site for r in wanted if isinstance(r, Activations)})
    if sites:
        def capture() -> Values:
            acts = model.capture(x, sites)
            return {Activations(name): acts[name] for name in sites}

        _guard(values, failures, [Activations(s) for s in sites], capture)
    return {k: v for k, v in values.items() if k in wanted}, failures


def _token_readouts(vit: ViTParts, x: torch.Tensor, wanted: set[Readout], values: Values,
                    failures: Failures) -> None:
    """Logits, isolated-CLS logits and patch heads of a ViT from one embedding and one pass."""
    isolated = sorted({r for r in wanted if isinstance(r, IsolatedLogits)}, key=_layer)
    for readout in [r for r in isolated if r.layer > vit.depth]:
        failures[readout] = ValueError(
            f"insertion layer {readout.layer} is past the model's depth {vit.depth}")
    isolated = [r for r in isolated if r.layer <= vit.depth]
    heads = [r for r in _PATCH_HEADS if r in wanted]
    shared: dict[str, torch.Tensor] = {}

    def forward() -> Values:
        shared["tokens"] = vit.embed(x)
        shared["final"] = vit.run_blocks(shared["tokens"], 0, vit.depth)
        return {LOGITS: vit.pool_head(shared["final"])}

    def isolation() -> Values:
        layers = {r.layer for r in isolated}
        by_layer = isolated_logits(vit, shared["tokens"], layers - {0})
        by_layer[0] = values[LOGITS]  # L = 0 is the unmodified model: the same computation
        return {IsolatedLogits(n): by_layer[n] for n in layers}

    def patch_heads() -> Values:
        per_patch = patch_token_logits(vit, shared["final"])
        return {TOKEN_LOGITS: per_patch, MEAN_TOKEN_LOGITS: per_patch.mean(dim=1)}

    _guard(values, failures, [LOGITS, *isolated, *heads], forward)
    if LOGITS in values and isolated:
        _guard(values, failures, isolated, isolation)
    if LOGITS in values and heads:
        _guard(values, failures, heads, patch_heads)


def _layer(readout: IsolatedLogits) -> int:
    return readout.layer


def _guard(values: Values, failures: Failures, readouts: list[Readout],
           compute: Callable[[], Values]) -> None:
    """Run one shared computation; on error, every readout it would have given fails."""
    try:
        values.update(compute())
    except Exception as error:  # noqa: BLE001 - the readouts fail, the tasks asking report it
        for readout in readouts:
            failures[readout] = error
