"""The dataset interface study kinds read: labelled images in ImageNet layout, with boxes.

Images are decoded once, at their own resolution, to uint8 tensors (3, H, W); everything
model-specific (masking, resize and crop, filtering, normalization) happens afterwards, on the
device, so that one decoded batch can feed every variant of the fused pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from runner.data.boxes import Box, clip_boxes
from runner.errors import DatasetError


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: its file, class index and the boxes of its own class."""

    path: Path
    label: int
    boxes: tuple[Box, ...] = ()
    mask_path: Path | None = None  # exact foreground mask (synthetic world only)


@dataclass
class Batch:
    """Decoded images at native resolution, with their labels and boxes."""

    indices: torch.Tensor  # (B,) dataset indices
    images: list[torch.Tensor]  # B uint8 tensors (3, H_i, W_i)
    labels: torch.Tensor  # (B,) int64
    boxes: list[tuple[Box, ...]]
    skipped: int = 0  # unreadable images dropped from this batch

    def __len__(self) -> int:
        return len(self.images)

    def pin_memory(self) -> Batch:
        """The batch with its tensors in page-locked memory, so that copies to a GPU can run
        asynchronously (``non_blocking=True``); DataLoader's pinning thread calls this. Packed
        images (``pack_images``) are pinned in one copy and stay views of one buffer."""
        return Batch(self.indices.pin_memory(), pack_images(self.images, pin=True),
                     self.labels.pin_memory(), self.boxes, self.skipped)


@dataclass
class ImageDataset:
    """An image classification set in ImageNet layout (class folders or a labels file)."""

    name: str
    root: Path
    classes: list[str]  # class folder names (WordNet ids on ImageNet), index = label
    samples: list[Sample]
    info: dict[str, int] = field(default_factory=dict)  # counts: images without boxes...

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, index: int) -> torch.Tensor | None:
        """The image as uint8 (3, H, W), or None if the file cannot be read."""
        from runner.data.decode import read_rgb

        return read_rgb(self.samples[index].path)

    def decode_mask(self, index: int) -> torch.Tensor | None:
        """The exact foreground mask, bool (H, W), where the dataset has one (synthetic world)."""
        from runner.data.decode import read_mask

        mask_path = self.samples[index].mask_path
        return None if mask_path is None else read_mask(mask_path)

    def batches(
        self, batch_size: int, *, indices: Sequence[int] | None = None, workers: int = 0,
        pin_memory: bool = False, prefetch: int | None = None,
    ) -> Iterator[Batch]:
        """Decoded batches in index order; unreadable images are skipped and counted.

        One ``Batch`` per ``batch_size`` consecutive indices (all of them, or ``indices`` in the
        order given); unreadable images are left out of it and counted in ``skipped``, so a
        batch can be shorter than asked, even empty. Boxes are clipped to the decoded image.
        ``workers > 0`` decodes in that many DataLoader worker processes, in the same order,
        each keeping ``prefetch`` batches ready (None: DataLoader's default). ``pin_memory``
        hands out batches in page-locked memory (for asynchronous copies to a GPU).
        A pass over the whole dataset raises ``DatasetError`` after its last batch if not one
        image could be decoded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        order = list(range(len(self))) if indices is None else [int(i) for i in indices]
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        decoded = skipped = 0
        for batch in self._decode_chunks(chunks, workers, pin_memory, prefetch):
            decoded, skipped = decoded + len(batch), skipped + batch.skipped
            yield batch
        if indices is None and skipped and not decoded:
            raise self._unreadable_error(skipped, self.samples[order[0]].path)

    def _unreadable_error(self, count: int, example: Path) -> DatasetError:
        """The error for a dataset none of whose images decode: it names the folder, so the
        task fails with the cause rather than with empty results."""
        return DatasetError(
            f"dataset {self.name!r}: none of its {count} images could be decoded (all "
            f"unreadable, e.g. {example}). Expected image files (JPEG, PNG...) under the folder "
            f"{self.root}; check that they are complete and not empty, or point `root:` at the "
            "right folder."
        )

    def _decode_chunks(self, chunks: list[list[int]], workers: int, pin_memory: bool = False,
                       prefetch: int | None = None) -> Iterator[Batch]:
        """One decoded ``Batch`` per chunk of indices, in this process or in DataLoader
        workers (pinned if asked, ``prefetch`` batches ahead per worker)."""
        if workers <= 0:
            for chunk in chunks:
                batch = _collate([_decoded(self, i) for i in chunk])
                yield batch.pin_memory() if pin_memory else batch
            return
        from torch.utils.data import DataLoader

        yield from DataLoader(
            _DecodeView(self), batch_sampler=chunks, num_workers=workers, collate_fn=_collate,
            pin_memory=pin_memory, prefetch_factor=prefetch,
        )


_Decoded = tuple[int, "torch.Tensor | None", int, tuple[Box, ...]]


def _decoded(dataset: ImageDataset, index: int) -> _Decoded:
    """One image decoded, with its boxes clipped to the pixels it really has."""
    sample = dataset.samples[index]
    image = dataset.decode(index)
    boxes = sample.boxes if image is None else clip_boxes(sample.boxes, *image.shape[-2:])
    return index, image, sample.label, boxes


class _DecodeView:
    """Map-style view for DataLoader workers: index -> (index, image or None, label, boxes)."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> _Decoded:
        return _decoded(self.dataset, index)


def pack_images(images: list[torch.Tensor], *, pin: bool = False) -> list[torch.Tensor]:
    """The images as views of one flat uint8 buffer (pinned if ``pin``), in order and equal.
    A batch decoded in a worker then crosses to the main process as one shared-memory block
    (not one per image), and is pinned in one copy: with 128 ImageNet-sized images a batch,
    per-image transfers held the decode workers' rate near one process's."""
    base = _shared_base(images)
    if base is not None and (not pin or base.is_pinned()):
        return images
    if base is not None:  # already packed: pin the buffer once, keep the views' layout
        pinned = base.pin_memory()
        return [pinned.as_strided(im.shape, im.stride(), im.storage_offset()) for im in images]
    flat = torch.empty(sum(im.numel() for im in images), dtype=torch.uint8, pin_memory=pin)
    views, start = [], 0
    for image in images:
        view = flat[start : start + image.numel()].view(image.shape)
        view.copy_(image)
        views.append(view)
        start += image.numel()
    return views


def _shared_base(images: list[torch.Tensor]) -> torch.Tensor | None:
    """The flat buffer every image is a view of, or None when they do not share one."""
    if not images:
        return None
    storage = images[0].untyped_storage()
    if any(im.untyped_storage().data_ptr() != storage.data_ptr() for im in images[1:]):
        return None
    if len(images) == 1 and images[0].numel() != storage.nbytes():
        return None
    return torch.empty(0, dtype=torch.uint8).set_(storage)


def _collate(items: list[_Decoded]) -> Batch:
    """Images of different sizes stay a list; unreadable ones are dropped and counted. In a
    decode worker the images are packed into one buffer (``pack_images``) for the crossing."""
    from torch.utils.data import get_worker_info

    kept = [item for item in items if item[1] is not None]
    images = [item[1] for item in kept]
    return Batch(
        indices=torch.tensor([item[0] for item in kept], dtype=torch.int64),
        images=pack_images(images) if get_worker_info() is not None else images,
        labels=torch.tensor([item[2] for item in kept], dtype=torch.int64),
        boxes=[item[3] for item in kept],
        skipped=len(items) - len(kept),
    )
