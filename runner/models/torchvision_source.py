"""torchvision classifiers, the paper's CNN baselines: ResNet-50/152, MobileNetV2, DenseNet121.

Any torchvision classification model works by name; weights by enum name (``IMAGENET1K_V1``)
or ``true`` for the default, fetched from torch hub's cache. Sites are ``stage{s}``: the last
top-level module at each resolution (ResNet: relu, layer1..4; MobileNetV2 and DenseNet: the
corresponding modules of ``features``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from runner.errors import ModelError
from runner.models.errors import unknown_model
from runner.models.preprocess import from_torchvision_transform, torchvision_default, with_overrides
from runner.models.structure import Structure, seeded
from runner.models.weights import load_weights, require_url

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

    from runner.models.sources import Init
    from runner.schema import ModelSpec


def build(spec: ModelSpec, init: Init, weights_file: Path | None,
          base_dir: Path | None = None) -> tuple[nn.Module, None]:
    """The torchvision module; ``init``: 'meta', 'random', 'pretrained' or 'file'."""
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)
    if spec.name not in names:
        raise unknown_model("torchvision", spec.name, names)
    kwargs = dict(spec.kwargs)
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    if init == "pretrained":
        weights = locate_pretrained(spec)
        if weights is not None:
            try:
                return tvm.get_model(spec.name, weights=weights, **kwargs), None
            except ValueError as e:  # num_classes that the weights do not have
                raise ModelError(f"torchvision model {spec.name}: {e}") from e
    if init == "meta":
        with torch.device("meta"):
            return tvm.get_model(spec.name, weights=None, **kwargs), None
    with seeded():
        net = tvm.get_model(spec.name, weights=None, **kwargs)
    if init == "file" and weights_file is not None:
        load_weights(net, weights_file, spec.name)
    return net, None


def weights_enum(spec: ModelSpec) -> WeightsEnum | None:
    """The weights enum member a model entry asks for (None for random init)."""
    import torchvision.models as tvm

    if spec.pretrained is False:
        return None
    enum = tvm.get_model_weights(spec.name)
    if spec.pretrained is True:
        return enum.DEFAULT
    try:
        return enum[spec.pretrained]
    except KeyError:
        raise ModelError(f"torchvision model {spec.name} has no weights {spec.pretrained!r}; "
                         f"it has: {', '.join(w.name for w in enum)}.") from None


def locate_pretrained(spec: ModelSpec) -> WeightsEnum | None:
    """The weights enum member, after checking its file is cached or can be downloaded."""
    weights = weights_enum(spec)
    if weights is not None:
        require_url(f"{spec.name} / {weights.name} (torchvision)", weights.url,
                    Path(torch.hub.get_dir()) / "checkpoints")
    return weights


def structure(net: nn.Module, spec: ModelSpec, base_dir: Path | None = None) -> Structure:
    """Preprocessing from the weights' transforms; stages found by resolution."""
    weights = weights_enum(spec) if not spec.weights else None
    pre = from_torchvision_transform(weights.transforms()) if weights else torchvision_default()
    return Structure(preprocess=with_overrides(pre, spec.preprocess), stages=[])
