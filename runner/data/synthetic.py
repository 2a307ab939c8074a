"""The synthetic world: shapes (the classes) over textured backgrounds, written in ImageNet layout.

A world is a pure function of its params (``SyntheticDataset`` minus ``split``, ``subset`` and
``cache``). It is generated once into ``<cache>/synthetic/<world id>/``::

    classes.txt                       class names in label order (each a WordNet noun:
                                      ``synthetic_render.SHAPE_WNIDS``)
    world.json                        the params and generator version (written last)
    <split>/<class>/<class>_<i>.png   images (split: train, val)
    <split>_boxes/<stem>.xml          PASCAL-VOC box of the shape (tight bbox of its mask)
    <split>_masks/<stem>.png          exact foreground mask (0 / 255)

Generation writes into a temporary folder and renames it into place, so concurrent runs never
see a half-written world. ``python -m runner.data.synthetic --out sheet.png`` draws a contact
sheet of the world without writing it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.data.cache import cache_root
from runner.errors import DatasetError
from runner.schema import SyntheticDataset

if TYPE_CHECKING:
    from runner.data.base import ImageDataset

#: Bump whenever the generator draws different images for the same params.
GENERATOR_VERSION = 2
#: The params a world is a function of (``split`` picks a part of it).
WORLD_FIELDS = ("classes", "train_per_class", "val_per_class", "size", "home_prob",
                "colour_prob", "seed",
                "corrupt")
_STALE_TEMP_SECONDS = 3600


def world_params(spec: SyntheticDataset) -> dict[str, Any]:
    """What the world's images are a function of, generator version included."""
    return {"generator": GENERATOR_VERSION, **{k: getattr(spec, k) for k in WORLD_FIELDS}}


def world_id(spec: SyntheticDataset) -> str:
    """Short content id of the world: its folder name in the cache."""
    canonical = json.dumps(world_params(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def world_dir(spec: SyntheticDataset) -> Path:
    """Where the world lives: ``<cache>/synthetic/<world id>``."""
    return cache_root(spec.cache) / "synthetic" / world_id(spec)


def check_synthetic(name: str, spec: SyntheticDataset) -> None:
    """Raise ``DatasetError`` if the world cannot be generated where the spec says (cheap)."""
    base = cache_root(spec.cache)
    existing = next((p for p in (base, *base.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DatasetError(
            f"dataset {name!r}: the synthetic world's cache folder {base} cannot be created "
            f"because {existing} is a file. Expected `cache:` (or $VITSTUDY_CACHE) to name a "
            "folder, existing or not."
        )


def ensure_world(spec: SyntheticDataset) -> Path:
    """The world's folder, generated first if needed; safe with concurrent processes."""
    final = world_dir(spec)
    if (final / "world.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(final)
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write_world(temp, spec)
        if final.exists() and not (final / "world.json").is_file():
            shutil.rmtree(final, ignore_errors=True)  # an interrupted copy left by hand
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / "world.json").is_file():  # lost the race to a valid world: fine
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return final


def write_world(dest: Path, spec: SyntheticDataset) -> None:
    """Render every image of both splits into ``dest`` (ImageNet layout, boxes, masks)."""
    import numpy as np

    from runner.data.boxes import voc_annotation
    from runner.data.synthetic_render import SHAPES, SPLITS, render_image

    classes = SHAPES[: spec.classes]
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for split in SPLITS:
        per_class = spec.train_per_class if split == "train" else spec.val_per_class
        boxes_dir, masks_dir = dest / f"{split}_boxes", dest / f"{split}_masks"
        boxes_dir.mkdir(parents=True)
        masks_dir.mkdir()
        for class_index, cls in enumerate(classes):
            (dest / split / cls).mkdir(parents=True)
            for i in range(per_class):
                stem = f"{cls}_{i:05d}"
                r = render_image(spec.seed, split, class_index, i, size=spec.size,
                                 home_prob=spec.home_prob, colour_prob=spec.colour_prob)
                (dest / split / cls / f"{stem}.png").write_bytes(png_bytes(r.image))
                (masks_dir / f"{stem}.png").write_bytes(png_bytes(r.mask.astype(np.uint8) * 255))
                xml = voc_annotation(f"{stem}.png", spec.size, spec.size, [(cls, r.box)], cls)
                (boxes_dir / f"{stem}.xml").write_text(xml)
        garbage = np.random.default_rng([spec.seed, SPLITS.index(split), 0xBAD])
        for k in range(spec.corrupt):
            path = dest / split / classes[k % len(classes)] / f"corrupt_{k:03d}.png"
            path.write_bytes(garbage.bytes(256))
    (dest / "world.json").write_text(json.dumps(world_params(spec), sort_keys=True, indent=1))


def open_synthetic(name: str, spec: SyntheticDataset) -> ImageDataset:
    """The split ``spec.split`` of the world (generated on first use), masks attached."""
    from runner.data.folder import FolderPaths, read_folder

    world = ensure_world(spec)
    paths = FolderPaths(world / spec.split, boxes=world / f"{spec.split}_boxes",
                        classes=world / "classes.txt")
    dataset = read_folder(name, paths, spec.subset)
    masks = world / f"{spec.split}_masks"
    present = set(os.listdir(masks))
    dataset.samples = [
        replace(s, mask_path=masks / f"{s.path.stem}.png") if f"{s.path.stem}.png" in present
        else s
        for s in dataset.samples
    ]
    return dataset


def contact_sheet(
    spec: SyntheticDataset, per_class: int = 8, scale: int = 2, boxes: bool = False
) -> Any:
    """A PIL image: one row per class (its first images of ``spec.split``), rendered in memory."""
    from PIL import Image, ImageDraw

    from runner.data.synthetic_render import SHAPES, render_image

    side, label_width = spec.size * scale, 80
    sheet = Image.new("RGB", (label_width + per_class * (side + 2), spec.classes * (side + 2)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for c in range(spec.classes):
        top = c * (side + 2)
        draw.text((4, top + side // 2 - 6), SHAPES[c], fill="black")
        for i in range(per_class):
            r = render_image(spec.seed, spec.split, c, i, size=spec.size,
                             home_prob=spec.home_prob, colour_prob=spec.colour_prob)
            tile = Image.fromarray(r.image).resize((side, side), Image.NEAREST)
            left = label_width + i * (side + 2)
            sheet.paste(tile, (left, top))
            if boxes:
                xmin, ymin, xmax, ymax = r.box
                draw.rectangle([left + xmin * scale, top + ymin * scale,
                                left + (xmax + 1) * scale - 1, top + (ymax + 1) * scale - 1],
                               outline="red")
    return sheet


def png_bytes(pixels: Any) -> bytes:
    """A minimal PNG (8-bit grey or RGB, no filter, fast zlib) of a uint8 (H, W[, 3]) array.

    Five times faster than PIL's encoder for small images, which dominates world generation.
    """
    import numpy as np

    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + pixels[0].size), dtype=np.uint8)  # filter byte 0 per row
    rows[:, 1:] = pixels.reshape(height, -1)
    colour_type = 2 if pixels.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
        for tag, data in ((b"IHDR", header), (b"IDAT", zlib.compress(rows.tobytes(), 1)),
                          (b"IEND", b""))
    )


def _remove_stale_temps(final: Path) -> None:
    """Delete temporary folders of this world left by killed runs (older than an hour)."""
    cutoff = time.time() - _STALE_TEMP_SECONDS
    for temp in final.parent.glob(f".tmp-{final.name}-*"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < cutoff:
                shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Command line: write a contact sheet of a synthetic world to look at it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--per-class", type=int, default=8, help="images per class (columns)")
    parser.add_argument("--scale", type=int, default=2, help="pixel magnification")
    parser.add_argument("--boxes", action="store_true", help="draw each image's box in red")
    for field in ("classes", "size", "home_prob", "seed", "split"):
        info = SyntheticDataset.model_fields[field]
        parser.add_argument(f"--{field.replace('_', '-')}", default=info.default,
                            type=type(info.default), help=info.description)
    args = parser.parse_args(argv)
    spec = SyntheticDataset(kind="synthetic", classes=args.classes, size=args.size,
                            home_prob=args.home_prob, seed=args.seed, split=args.split)
    contact_sheet(spec, args.per_class, args.scale, args.boxes).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
