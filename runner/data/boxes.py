"""PASCAL-VOC XML bounding boxes, as ImageNet ships them: reading, writing, finding the file.

Coordinates in VOC files are 1-based pixel indices with both ends inclusive (the top-left
pixel is (1, 1)). In memory a ``Box`` is 0-based and inclusive (``runner.data.base.Box``): we
subtract 1 from all four numbers, then clip to the image (``<size>``); a 0 in a file (ImageNet
has a few) thus clips to 0. Boxes left empty by clipping (wholly outside the image) are dropped.
A coordinate that is not a finite number, or a box whose max is below its min, makes the whole
file unreadable (``BoxFileError``): the dataset counts it and goes on without that file's boxes.
Boxes are clipped again to the decoded image (``clip_boxes``), whose size the file may misstate.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from runner.data.fingerprint import BOX_SUFFIXES

#: A bounding box: (xmin, ymin, xmax, ymax), 0-based pixel indices (column, row) of the image
#: as decoded, both ends inclusive: the box covers columns xmin..xmax and rows ymin..ymax, i.e.
#: ``image[:, ymin:ymax + 1, xmin:xmax + 1]``. PASCAL-VOC / ImageNet XML files count pixels from
#: 1 (both ends inclusive), so the reader subtracts 1 from every coordinate and clips to the
#: image (below); the synthetic world writes its files the same way.
Box = tuple[int, int, int, int]


class BoxFileError(ValueError):
    """A box file that is not readable VOC XML."""


#: An object in a box file: (name, box) with the box 0-based, inclusive and clipped to the image,
#: or (name, None) for an object without a ``<bndbox>``. Objects clipped away are left out.
VocObject = tuple[str, Box | None]


def read_voc_objects(path: Path) -> list[VocObject]:
    """Every object of a VOC file, whatever its class."""
    try:
        root = ET.parse(path).getroot()
        width = _int(root.findtext("size/width"), 0)
        height = _int(root.findtext("size/height"), 0)
        objects: list[VocObject] = []
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if bb is None:
                objects.append((name, None))
                continue
            xmin, ymin, xmax, ymax = (
                _int(bb.findtext(tag), None) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            if xmax < xmin or ymax < ymin:
                raise ValueError(f"a box of {name!r} is reversed (xmin {xmin + 1} xmax {xmax + 1}"
                                 f", ymin {ymin + 1} ymax {ymax + 1})")
            box = _clip((xmin, ymin, xmax, ymax), width, height)
            if box is not None:
                objects.append((name, box))
    except (ET.ParseError, TypeError, ValueError, OSError) as e:
        raise BoxFileError(f"{path}: not a readable PASCAL-VOC box file ({e})") from e
    return objects


def boxes_of_class(objects: Sequence[VocObject], class_id: str, path: Path) -> tuple[Box, ...]:
    """The boxes of the objects named ``class_id``; one of them without a box is an error."""
    boxes = []
    for name, box in objects:
        if name != class_id:
            continue
        if box is None:
            raise BoxFileError(f"{path}: an <object> of {class_id} has no <bndbox>")
        boxes.append(box)
    return tuple(boxes)


def clip_boxes(boxes: Sequence[Box], height: int, width: int) -> tuple[Box, ...]:
    """The boxes clipped to an image of ``height`` x ``width``; a box wholly outside is dropped,
    so an image whose boxes all miss it counts as an image without boxes."""
    clipped = (_clip(tuple(box), width, height) for box in boxes)
    return tuple(box for box in clipped if box is not None)


def parse_voc_boxes(path: Path, class_id: str) -> tuple[Box, ...]:
    """The boxes in a VOC file whose ``<name>`` is ``class_id``, 0-based and inclusive."""
    return boxes_of_class(read_voc_objects(path), class_id, path)


def voc_annotation(
    filename: str, width: int, height: int, objects: Sequence[tuple[str, Box]], folder: str = ""
) -> str:
    """A VOC XML document for in-memory (0-based, inclusive) boxes; written 1-based."""
    parts = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>",
    ]
    for name, (xmin, ymin, xmax, ymax) in objects:
        parts.append(
            f"\t<object>\n\t\t<name>{name}</name>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{xmin + 1}</xmin>\n\t\t\t<ymin>{ymin + 1}</ymin>\n"
            f"\t\t\t<xmax>{xmax + 1}</xmax>\n\t\t\t<ymax>{ymax + 1}</ymax>\n"
            "\t\t</bndbox>\n\t</object>"
        )
    parts.append("</annotation>\n")
    return "\n".join(parts)


class BoxIndex:
    """Finds an image's box file in either ImageNet layout under one folder.

    Val layout: ``<boxes>/<stem>.xml``; train layout: ``<boxes>/<class id>/<stem>.xml``.
    Folders are listed once each, on first use, so lookups cost no file-system calls.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._flat = _xml_stems(root)
        self._per_class: dict[str, dict[str, Path]] = {}

    def find(self, stem: str, class_id: str) -> Path | None:
        """The box file of image ``stem`` of class ``class_id``, or None."""
        if class_id not in self._per_class:
            folder = self.root / class_id
            self._per_class[class_id] = _xml_stems(folder) if folder.is_dir() else {}
        return self._per_class[class_id].get(stem) or self._flat.get(stem)


class BoxTable:
    """The objects of the box files under one folder, parsed once and kept in the cache folder.

    ImageNet train has 545k box files, about a minute and a half to parse; the table is keyed by
    the folder's content fingerprint, so it is reused until a box file is added, removed or
    changes size, and each file is parsed the first time an image needs it.
    """

    def __init__(self, root: Path, fingerprint: str, cache_dir: Path | None = None) -> None:
        from runner.data.cache import cache_root, read_json

        self.root = Path(os.path.abspath(root))
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:24]
        self.cache_file = (cache_dir or cache_root() / "boxes") / f"{key}.json"
        self.fingerprint = fingerprint
        cached = read_json(self.cache_file)
        valid = (isinstance(cached, dict) and cached.get("format") == _TABLE_FORMAT
                 and cached.get("fingerprint") == fingerprint
                 and cached.get("root") == str(self.root)
                 and isinstance(cached.get("files"), dict))
        self._files: dict[str, list | str] = cached["files"] if valid else {}
        self.parsed = 0  # files parsed by this table (not found in the cache)

    def objects(self, path: Path) -> list[VocObject]:
        """The objects of the box file ``path`` (under the root); raises ``BoxFileError``."""
        rel = Path(os.path.relpath(os.path.abspath(path), self.root)).as_posix()
        entry = self._files.get(rel)
        if entry is None:
            self.parsed += 1
            try:
                entry = [[name, *box] if box else [name]
                         for name, box in read_voc_objects(path)]
            except BoxFileError as e:
                entry = str(e)
            self._files[rel] = entry
        if isinstance(entry, str):
            raise BoxFileError(entry)
        return [(item[0], tuple(item[1:]) if len(item) == 5 else None) for item in entry]

    def save(self) -> None:
        """Write the table back if this run parsed files; a read-only cache only costs time."""
        from runner.data.cache import write_json_atomic

        if self.parsed:
            with contextlib.suppress(OSError):
                write_json_atomic(self.cache_file, {
                    "format": _TABLE_FORMAT, "root": str(self.root),
                    "fingerprint": self.fingerprint, "files": self._files})


_TABLE_FORMAT = 2  # 2: reversed and non-finite boxes make the file unreadable


def _xml_stems(folder: Path) -> dict[str, Path]:
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in BOX_SUFFIXES and not entry.name.startswith("."):
                found[stem] = Path(entry.path)
    return found


def _int(text: str | None, default: int | None) -> int:
    if text is None or not text.strip():
        if default is None:
            raise ValueError("a box coordinate is missing")
        return default
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a box coordinate is {text.strip()!r}, not a finite number")
    return int(round(value))


def _clip(box: tuple[int, int, int, int], width: int, height: int) -> Box | None:
    xmin, ymin, xmax, ymax = box
    xmin, ymin = max(xmin, 0), max(ymin, 0)
    if width > 0:
        xmax = min(xmax, width - 1)
    if height > 0:
        ymax = min(ymax, height - 1)
    if xmax < xmin or ymax < ymin:
        return None
    return (xmin, ymin, xmax, ymax)
