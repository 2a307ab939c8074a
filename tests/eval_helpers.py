"""Shared by the evaluation-kind and fused-pass tests: a tiny ViT, a small synthetic world, and
task contexts whose artifacts stay in memory so tests can read them back."""

from __future__ import annotations

import functools
import io
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from runner.execute.fused import pass_runner
from runner.kinds import get_kind
from runner.kinds.base import TaskContext
from runner.store import MemorySink

#: The TINY_STUDY's validation world (tests/helpers.py): generated once per test session.
WORLD = dict(kind="synthetic", split="val", classes=4, train_per_class=24, val_per_class=6,
             size=32)
VIT_KWARGS = dict(img_size=32, patch_size=8, depth=3, embed_dim=32, num_heads=2,
                  num_classes=10)


@functools.cache
def tiny_vit(**overrides: Any) -> torch.nn.Module:
    """A random-init 3-block ViT on 32-px inputs (a 4 x 4 patch grid + CLS), 10 classes."""
    from runner.models import build_untrained
    from runner.schema import ModelSpec

    spec = ModelSpec(source="timm", name="vit_tiny_patch16_224", pretrained=False,
                     kwargs={**VIT_KWARGS, **overrides})
    return build_untrained(spec).eval()


def synthetic_val(without_boxes: tuple[int, ...] = ()):
    """The 4 x 6-image synthetic validation split; the images in ``without_boxes`` lose them."""
    from runner.data.synthetic import open_synthetic
    from runner.schema import SyntheticDataset

    dataset = open_synthetic("shapes_val", SyntheticDataset(**WORLD))
    dataset.samples = [replace(s, boxes=()) if i in without_boxes else s
                       for i, s in enumerate(dataset.samples)]
    return dataset



def context(kind: str, model, dataset, *, batch_size: int = 8, **params: Any) -> TaskContext:
    """A task context as the executor builds it, for kind ``kind`` with ``params``."""
    ctx = TaskContext(key=f"test-{kind}", kind=kind, params=get_kind(kind).Params(**params),
                      seed=0, sink=MemorySink(), batch_size=batch_size, model_name="tiny",
                      load_model=lambda: model, load_dataset=lambda: dataset,
                      log=lambda _text: None)
    ctx.run_pass = pass_runner(ctx)
    return ctx


def metric(ctx: TaskContext, name: str, **dims: Any) -> float:
    """The value of the one metric row named ``name`` with exactly these dimensions."""
    keys = ("variant", "layer", "feature", "x", "position")
    rows = [m for m in ctx.result.metrics
            if m.name == name and all(getattr(m, k) == dims.get(k) for k in keys)]
    assert len(rows) == 1, f"{len(rows)} rows for {name} {dims}"
    return rows[0].value


def artifact(ctx: TaskContext, role: str) -> Any:
    """The one artifact of ``role``, decoded (npz -> dict of arrays, npy -> array, png -> bytes)."""
    rows = [a for a in ctx.result.artifacts if a.role == role]
    assert len(rows) == 1, f"{len(rows)} artifacts with role {role}"
    data = ctx.sink.files[rows[0].path]
    if rows[0].path.endswith(".npz"):
        with np.load(io.BytesIO(data)) as npz:
            return {k: npz[k] for k in npz.files}
    if rows[0].path.endswith(".npy"):
        return np.load(io.BytesIO(data))
    return data


def model_inputs(model, dataset, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``dataset`` as the model sees it (optionally transformed at native
    resolution first, ``transform(float image, sample)``), and the labels."""
    from runner.ops.pixels import model_batch, to_unit

    pre = model.preprocess
    images = []
    for i, sample in enumerate(dataset.samples):
        image = to_unit(dataset.decode(i))
        images.append(transform(image, sample) if transform else image)
    x = model_batch(images, pre.size, pre.crop_pct, pre.interpolation)
    return x, torch.tensor([s.label for s in dataset.samples])


def accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Top-k accuracy in percent, computed with numpy's argsort (independent of torch.topk)."""
    order = np.argsort(-logits.double().numpy(), axis=-1, kind="stable")[..., :k]
    return 100.0 * float((order == labels.numpy()[..., None]).any(axis=-1).mean())
