"""Datasets: ImageNet-layout folders with VOC boxes, and the offline synthetic world.

Importing this package is cheap (no torch): planning only needs ``dataset_identity`` and
``check_dataset``. ``open_dataset`` loads the data (and imports torch) when a task runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from runner.schema import ImagenetDataset, SyntheticDataset

if TYPE_CHECKING:
    from runner.data.base import Batch, Box, ImageDataset, Sample

__all__ = [
    "Batch", "Box", "ImageDataset", "Sample",
    "check_dataset", "dataset_identity", "open_dataset",
]

DatasetSpecT = SyntheticDataset | ImagenetDataset


def dataset_identity(spec: DatasetSpecT, name: str | None = None) -> str:
    """The dataset's part of task keys: what its content is, never where it lives.

    Synthetic: generator version + every param but ``cache``. ImageNet: a fingerprint of
    relative paths and sizes of the images and box files and of the labels/classes files'
    bytes. Both + the subset (a subset that keeps everything is no subset). ``name`` only
    names the dataset in a ``DatasetError`` (a missing folder has no fingerprint).
    """
    from runner.data.subset import subset_identity

    if isinstance(spec, SyntheticDataset):
        from runner.data.synthetic import world_params

        content: dict[str, Any] = {**world_params(spec), "split": spec.split}
    else:
        content = {"fingerprint": _imagenet_fingerprint(name or spec.kind, spec)}
    identity = {"kind": spec.kind, **content, "subset": subset_identity(spec.subset)}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"))


def check_dataset(name: str, spec: DatasetSpecT) -> None:
    """Raise ``DatasetError`` if the dataset cannot be opened as declared: its folders and
    files exist, it holds images, and they are labelled (a listing and a few decoded images;
    see ``runner.data.folder.check_contents``)."""
    if isinstance(spec, SyntheticDataset):
        from runner.data.synthetic import check_synthetic

        check_synthetic(name, spec)
    else:
        from runner.data.folder import check_contents, imagenet_paths

        check_contents(name, imagenet_paths(spec))


def open_dataset(name: str, spec: DatasetSpecT) -> ImageDataset:
    """Read a dataset (generating the synthetic world on first use)."""
    if isinstance(spec, SyntheticDataset):
        from runner.data.synthetic import open_synthetic

        return open_synthetic(name, spec)
    from runner.data.folder import imagenet_paths, read_folder

    return read_folder(name, imagenet_paths(spec), spec.subset)


def _imagenet_fingerprint(name: str, spec: ImagenetDataset) -> str:
    from runner.data.fingerprint import (
        BOX_SUFFIXES,
        IMAGE_SUFFIXES,
        file_digest,
        tree_fingerprint,
    )
    from runner.data.folder import check_folder, imagenet_paths

    paths = imagenet_paths(spec)
    check_folder(name, paths)
    parts = {
        "images": tree_fingerprint(paths.root, IMAGE_SUFFIXES),
        "boxes": tree_fingerprint(paths.boxes, BOX_SUFFIXES) if paths.boxes else None,
        "labels": file_digest(paths.labels) if paths.labels else None,
        "classes": file_digest(paths.classes) if paths.classes else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def __getattr__(name: str) -> Any:
    """The dataset classes, imported on first use (they need torch)."""
    if name in ("Batch", "Box", "ImageDataset", "Sample"):
        from runner.data import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
