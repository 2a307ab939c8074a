"""Params of ``train``: light (pydantic only); also what a model entry's ``train:`` block is
validated against (``runner/spec.py``)."""

from __future__ import annotations

from pydantic import Field

from runner.kinds.base import KindParams, Seed


class TrainParams(KindParams):
    """Training recipe: AdamW, linear warm-up then cosine decay, label smoothing."""

    val: str | None = Field(None, description="name of the validation dataset (top-1/top-5 "
                            "reported after every epoch)")
    epochs: int = Field(10, ge=1, description="passes over the training set")
    batch_size: int = Field(64, ge=1, description="images per optimizer step")
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate of AdamW")
    weight_decay: float = Field(0.05, ge=0.0, description="AdamW weight decay")
    warmup_epochs: float = Field(1.0, ge=0.0, description="epochs of linear warm-up")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="cross-entropy smoothing")
    augment: bool = Field(True, description="random resized crop (scale 0.6-1) and flip")
    seed: Seed = Field(0, description="seed of initialization, order and augmentation")
