"""Decoding image files to tensors: RGB uint8 at native resolution, None when unreadable.

Pillow's own ``convert("RGB")`` clips 16- and 32-bit greyscale (modes ``I;16*``, ``I``, ``F``)
to 255, which turns a 16-bit PNG almost white; those modes are scaled to 8 bits here first.
Alpha is dropped (as torchvision and timm loaders do); palette, CMYK, LA and bilevel images go
through Pillow's conversion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:  # numpy and torch come when pixels are read: planning checks files without
    import numpy as np
    import torch

#: Greyscale modes wider than 8 bits; 16-bit PNG and TIFF files open in one of these.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def read_rgb(path: Path) -> torch.Tensor | None:
    """The image as uint8 (3, H, W) RGB (grey, CMYK, palette and alpha images converted)."""
    import numpy as np
    import torch

    array = _read(path, "RGB")
    if array is None:
        return None
    # numpy's channel-first copy is about 4x faster than torch's permute().contiguous() on a
    # JPEG-sized image, and the bytes are the same
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_mask(path: Path) -> torch.Tensor | None:
    """A foreground mask file as bool (H, W): True where the pixel is non-zero."""
    import torch

    array = _read(path, "L", mask=True)
    return None if array is None else torch.from_numpy(array > 0)


def unreadable_sample(paths: Sequence[Path], size: int = 8) -> list[Path] | None:
    """Decode up to ``size`` of ``paths``, spread evenly over them; the ones tried when not
    one decodes (the dataset is most likely all unreadable), else None. No torch needed."""
    if not paths:
        return None
    step = max(1, len(paths) // size)
    sample = list(paths[::step][:size])
    return None if any(_decodes(path) for path in sample) else sample


def to_8bit(image: Image.Image, mode: str) -> np.ndarray:
    """The pixels of ``image`` in ``mode`` ("RGB" or "L") as uint8, wide greyscale scaled down:
    16-bit values v become round(v / 257) (65535 -> 255), float images in [0, 1] times 255."""
    import numpy as np

    if image.mode not in WIDE_GREY_MODES:
        return np.array(image.convert(mode), dtype=np.uint8)
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if np.nanmax(values, initial=0.0) <= 1.0 else 1.0
        grey = np.nan_to_num(values * scale, nan=0.0)
    else:
        grey = np.clip(values, 0, 65535) / 257.0
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file opened by Pillow, its warnings (EXIF/ICC chatter from odd files) muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as img:
            yield img


def _decodes(path: Path) -> bool:
    """Whether Pillow decodes the whole file (no numpy, no torch)."""
    try:
        with _opened(path) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
        return False


def _read(path: Path, mode: str, *, mask: bool = False) -> np.ndarray | None:
    import numpy as np

    try:
        with _opened(path) as img:
            if mask and img.mode in WIDE_GREY_MODES:  # any non-zero value is foreground
                return (np.asarray(img) != 0).astype(np.uint8)
            return to_8bit(img, mode)
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable", never fatal
        return None
