"""Building a ``LoadedModel`` from a model entry, whatever its source, and inspecting one.

Inspection builds the library module on the meta device (no weights, no memory, no download),
runs one shape-only forward to find every site's layout, and is memoized; loading builds the
real module, gets its weights from a cache, a local file or an upstream train task, and wraps
it with the inspected site table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from runner.errors import ModelError
from runner.models.base import LoadedModel, ModelInfo, ViTParts
from runner.models.hooked import (
    HookedModel,
    SiteReader,
    model_info,
    resolution_stages,
    stage_sites,
    transformer_sites,
)
from runner.models.identity import file_sha256, model_identity, resolve_path
from runner.models.sources import Init, source_of
from runner.models.structure import Structure
from runner.models.weights import load_weights
from runner.schema import ModelSpec

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class _Inspected:
    info: ModelInfo
    readers: dict[str, SiteReader]
    parts: Callable[[HookedModel], ViTParts] | None


_inspected: dict[str, _Inspected] = {}


def inspect_model(spec: ModelSpec, base_dir: Path | None = None, *,
                  shapes_only: bool = False) -> ModelInfo:
    """Sites, depth, classes and preprocessing of a model, without its weights (memoized).

    ``shapes_only``: what plan-time checks need (sites and their sizes), from the meta device
    alone, so that ``validate`` never allocates a model; loading still probes for real where
    a site's fast read must be verified on values.
    """
    return _inspect(spec, base_dir, shapes_only).info


def load_model(
    spec: ModelSpec,
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    base_dir: Path | None = None,
) -> LoadedModel:
    """The model ready for study kinds: eval mode, on ``device``, parameters frozen.

    ``weights`` (an upstream train task's checkpoint: the library module's ``state_dict``)
    wins over everything in the entry; a model with ``train:`` needs it.
    """
    source = source_of(spec)
    model_id = model_identity(spec, base_dir)
    if weights is not None:
        path = resolve_path(weights, base_dir)
        net, head = source.build(spec, "random", None, base_dir)
        load_weights(net, path, _display_name(spec))
        model_id += f" trained:sha256:{file_sha256(path)}"
    elif spec.train is not None:
        raise ModelError(f"model {_display_name(spec)} is trained inside the study (`train:`); "
                         "load it with the train task's checkpoint (weights=...).")
    else:
        net, head = source.build(spec, _init_of(spec), _weights_file(spec, base_dir), base_dir)
    model = _wrap(net, head, _inspect(spec, base_dir), model_id)
    model.eval().requires_grad_(False)
    return model.to(device)


def check_weights(spec: ModelSpec, base_dir: Path | None = None) -> None:
    """Plan-time check that a model's weights can be had: a file exists, or pretrained weights
    are cached or downloadable (at most ~1 s when offline). Raises ``ModelError``."""
    if spec.train is not None:
        return
    init = _init_of(spec)
    if init == "file":
        _weights_file(spec, base_dir)
    elif init == "pretrained":
        source_of(spec).locate_pretrained(spec)


def build_untrained(spec: ModelSpec, base_dir: Path | None = None) -> LoadedModel:
    """A random-init model (fixed seed) in train mode, for a train task to optimize."""
    inspected = _inspect(spec, base_dir)
    net, head = source_of(spec).build(spec, "random", None, base_dir)
    model = _wrap(net, head, inspected, model_identity(spec, base_dir))
    return model.train()


def _wrap(
    net: nn.Module, head: nn.Module | None, inspected: _Inspected, model_id: str
) -> HookedModel:
    return HookedModel(net, info=inspected.info, readers=inspected.readers, model_id=model_id,
                       head=head, parts=inspected.parts)


def _init_of(spec: ModelSpec) -> Init:
    if spec.source == "checkpoint" or spec.weights:
        return "file"
    return "random" if spec.pretrained is False else "pretrained"


def _weights_file(spec: ModelSpec, base_dir: Path | None) -> Path | None:
    path = spec.path if spec.source == "checkpoint" else spec.weights
    if path is None:
        return None
    resolved = resolve_path(path, base_dir)
    if not resolved.is_file():
        raise ModelError(f"weights file {resolved} of model {_display_name(spec)} does not exist "
                         "(relative paths are taken from the study file's folder).")
    return resolved


def _display_name(spec: ModelSpec) -> str:
    return f"{spec.arch or spec.name} ({spec.source})"


def _inspect(spec: ModelSpec, base_dir: Path | None, shapes_only: bool = False) -> _Inspected:
    key = spec.model_dump_json(exclude={"train"}) + "|" + str(base_dir)
    if shapes_only and key in _inspected:
        return _inspected[key]  # the full inspection has the shapes too
    key += "|shapes" if shapes_only else ""
    if key not in _inspected:
        _inspected[key] = _inspect_uncached(spec, base_dir, shapes_only)
    return _inspected[key]


def _inspect_uncached(spec: ModelSpec, base_dir: Path | None, shapes_only: bool) -> _Inspected:
    source = source_of(spec)
    try:
        net, _ = source.build(spec, "meta", None, base_dir)
        structure = source.structure(net, spec, base_dir)
        if shapes_only or not any(b.mlp_linear for b in structure.blocks or ()):
            return _describe(net, structure, spec, torch.device("meta"))
        log.debug("%s: a feed-forward read is verified on values; probing a random-init copy",
                  spec.name)
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - an op without a meta kernel: probe for real
        log.debug("meta probe of %s failed (%s); probing a random-init copy", spec.name, e)
    try:
        net, _ = source.build(spec, "random", None, base_dir)
        return _describe(net, source.structure(net, spec, base_dir), spec, torch.device("cpu"))
    except ModelError:
        raise
    except Exception as e:  # noqa: BLE001 - the library refuses the entry's settings
        raise ModelError(f"model {_display_name(spec)} cannot be built as its entry says: "
                         f"{type(e).__name__}: {e}. Check its `kwargs` and `num_classes` "
                         "against the architecture.", field="kwargs") from e


def _describe(net: nn.Module, structure: Structure, spec: ModelSpec,
              device: torch.device) -> _Inspected:
    size = structure.preprocess.size
    x = torch.zeros(1, 3, size, size, device=device)
    net = net.eval()
    if structure.blocks:
        infos, readers, out = transformer_sites(
            net, structure.blocks, x, max_prefix=structure.max_prefix,
            known_grid=structure.known_grid, sequence_first=structure.sequence_first)
    else:
        stages = structure.stages or resolution_stages(net, _stage_candidates(net), x)
        infos, readers, out = stage_sites(net, stages, x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    info = model_info(spec.arch or spec.name, infos, out, structure.preprocess,
                      has_cls_token=structure.has_cls_token, num_classes=structure.num_classes,
                      outputs=structure.outputs)
    return _Inspected(info=info, readers=readers, parts=structure.parts)


def _stage_candidates(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Top-level children of a CNN in forward order (torchvision keeps them in ``features``)."""
    features = getattr(net, "features", None)
    if isinstance(features, nn.Sequential):
        children = [(f"features.{n}", m) for n, m in features.named_children()]
    else:
        children = list(net.named_children())
    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Dropout)
    return [(n, m) for n, m in children if not isinstance(m, pools)]
