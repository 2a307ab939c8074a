"""Kind ``train``: fit a model on a dataset inside a study, so studies can run fully offline.

The planner inserts a train task upstream of every task that uses a model entry with
``train:``; its checkpoint artifact becomes that model's weights, and its key becomes part of
the downstream keys.
"""

from __future__ import annotations

from typing import ClassVar

from runner.kinds.base import Kind, KindParams
from runner.kinds.train.params import TrainParams


class Train(Kind):
    """Trains its (untrained) model; the ``checkpoint`` feeds the tasks downstream."""

    name: ClassVar[str] = "train"
    version: ClassVar[int] = 1
    Params: ClassVar[type[KindParams]] = TrainParams
    summary: ClassVar[str] = "train a model in the study (upstream of the tasks that use it)"
    dataset_params: ClassVar[tuple[str, ...]] = ("val",)
    trains_model: ClassVar[bool] = True


KIND = Train()
