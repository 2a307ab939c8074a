"""The ImageNet-layout reader: class folders (or a flat folder + labels file) and VOC boxes.

Labels follow one class list: the ``classes`` file when given; else timm's ImageNet-1k order when
every class is an ImageNet-1k WordNet id (so labels match the outputs of ImageNet models even
when only some class folders are present); else the sorted class names.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from runner.data.boxes import BoxFileError, BoxIndex, BoxTable, boxes_of_class
from runner.data.fingerprint import BOX_SUFFIXES, IMAGE_SUFFIXES, tree_fingerprint, walk_tree
from runner.data.subset import select_subset
from runner.errors import DatasetError
from runner.schema import ImagenetDataset, Subset

if TYPE_CHECKING:
    from runner.data.base import Box, ImageDataset

_INTEGER = re.compile(r"\d+")
_WNID = re.compile(r"n\d{8}")
_LAYOUT_HELP = (
    "Expected a folder of class folders (ImageNet layout: one folder per class, e.g. "
    "n01440764/*.JPEG) or a flat folder of images with a `labels` file"
)


@dataclass(frozen=True)
class FolderPaths:
    """Where an ImageNet-layout dataset lives; only ``root`` is required."""

    root: Path
    boxes: Path | None = None
    labels: Path | None = None
    classes: Path | None = None


def imagenet_paths(spec: ImagenetDataset) -> FolderPaths:
    """The paths of an ``imagenet`` dataset spec (``~`` expanded, relative to the cwd)."""

    def path(value: str | None) -> Path | None:
        return None if value is None else Path(value).expanduser().absolute()

    return FolderPaths(path(spec.root), path(spec.boxes), path(spec.labels), path(spec.classes))


def check_folder(name: str, paths: FolderPaths) -> None:
    """Raise ``DatasetError`` unless every declared path exists (cheap: no listing)."""
    if not paths.root.is_dir():
        problem = "is not a folder" if paths.root.exists() else "does not exist"
        raise DatasetError(
            f"dataset {name!r}: the root folder {paths.root} {problem}. {_LAYOUT_HELP}. Check "
            "`root:` in the study file (an environment variable it uses may be unset)."
        )
    if paths.boxes is not None and not paths.boxes.is_dir():
        problem = "is not a folder" if paths.boxes.exists() else "does not exist"
        raise DatasetError(
            f"dataset {name!r}: the boxes folder {paths.boxes} {problem}. Expected a folder of "
            "PASCAL-VOC XML files, <boxes>/<image stem>.xml (ImageNet val layout) or "
            "<boxes>/<class id>/<image stem>.xml (train layout). Fix `boxes:` or remove it to "
            "use the dataset without boxes."
        )
    for key, file in (("labels", paths.labels), ("classes", paths.classes)):
        if file is not None and not file.is_file():
            what = ("'<image> <class>' lines" if key == "labels" else "class ids, one per line")
            raise DatasetError(
                f"dataset {name!r}: the {key} file {file} does not exist. Expected a text file "
                f"of {what}. Fix `{key}:` in the study file or remove it."
            )


def read_folder(name: str, paths: FolderPaths, subset: Subset | None = None) -> ImageDataset:
    """Read an ImageNet-layout dataset: its images, labels and (if ``paths.boxes``) boxes."""
    from runner.data.base import ImageDataset, Sample

    rel_paths, labels, classes, unlabelled = _labelled(name, paths)
    kept = select_subset(labels, classes, subset)
    box_index = box_table = None
    if paths.boxes is not None:
        box_index = BoxIndex(paths.boxes)
        box_table = BoxTable(paths.boxes, tree_fingerprint(paths.boxes, BOX_SUFFIXES))
    samples, bad_box_files = [], 0
    for i in kept:
        boxes = _boxes_of(box_index, box_table, rel_paths[i], classes[labels[i]])
        bad_box_files += boxes is None
        samples.append(Sample(paths.root / rel_paths[i], labels[i], boxes or ()))
    if box_table is not None:
        box_table.save()
    info = {
        "images": len(samples),
        "images_before_subset": len(rel_paths),
        "boxes": sum(len(s.boxes) for s in samples),
        "no_boxes": sum(1 for s in samples if not s.boxes),
        "bad_box_files": bad_box_files,
        "box_files_parsed": box_table.parsed if box_table is not None else 0,
        "unlabelled": unlabelled,
    }
    return ImageDataset(name=name, root=paths.root, classes=classes, samples=samples, info=info)


def check_contents(name: str, paths: FolderPaths) -> None:
    """Raise ``DatasetError`` unless the folder holds labelled images as declared: class folders
    of images (or images the labels file names) and every class known. Lists the folder and
    reads the small text files; decodes a sample of at most 8 images (``check_readable``).
    What ``validate`` checks before a run."""
    rel_paths = _labelled(name, paths)[0]
    check_readable(name, paths.root, rel_paths)


def class_list(name: str, paths: FolderPaths) -> list[str]:
    """The dataset's class ids in label order, without opening it (lists the folder and reads
    the small text files, as ``check_contents`` does)."""
    return _labelled(name, paths)[2]


def check_readable(name: str, root: Path, rel_paths: list[str]) -> None:
    """Raise ``DatasetError`` when not one of a few images spread over the dataset decodes:
    a folder of broken files is refused before anything runs (a run checks every image)."""
    from runner.data.decode import unreadable_sample

    tried = unreadable_sample([root / rel for rel in rel_paths])
    if tried:
        raise DatasetError(
            f"dataset {name!r}: none of the {len(tried)} images tried of {len(rel_paths)} under "
            f"the folder {root} could be decoded (e.g. {tried[0]}). Expected image files "
            "(JPEG, PNG...); check that they are complete and not empty, or point `root:` at "
            "the right folder."
        )


def _labelled(name: str, paths: FolderPaths) -> tuple[list[str], list[int], list[str], int]:
    """(relative image paths, their labels, the class list, images left unlabelled)."""
    check_folder(name, paths)
    declared = read_classes_file(name, paths.classes) if paths.classes else None
    if paths.labels is not None:
        rel_paths, refs, unlabelled = _labelled_by_file(name, paths.root, paths.labels)
    else:
        rel_paths, refs, unlabelled = _labelled_by_folder(name, paths.root)
    classes = _class_list(name, paths, refs, declared)
    index_of = {c: i for i, c in enumerate(classes)}
    labels = [ref if isinstance(ref, int) else index_of[ref] for ref in refs]
    return rel_paths, labels, classes, unlabelled


def read_classes_file(name: str, path: Path) -> list[str]:
    """Class ids in label order: the first word of each non-blank line ('n01440764 tench')."""
    classes = [line.split()[0] for line in _lines(name, path) if line.split()]
    duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
    if not classes or duplicates:
        problem = "is empty" if not classes else f"lists {', '.join(duplicates[:3])} twice"
        raise DatasetError(
            f"dataset {name!r}: the classes file {path} {problem}. Expected one class id per "
            "line, in label order (the first word of a line is the id; the rest is ignored)."
        )
    return classes


@lru_cache(maxsize=1)
def imagenet1k_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in the label order of timm's (and torchvision's) models."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def _labelled_by_folder(name: str, root: Path) -> tuple[list[str], list[str], int]:
    files = [rel for rel, _ in walk_tree(root, IMAGE_SUFFIXES, sizes=False).files]
    in_folders = [rel for rel in files if "/" in rel]
    if not in_folders:
        found = (f"holds {len(files)} images directly but no class folders, and no `labels` "
                 "file is given" if files else
                 f"holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        raise DatasetError(f"dataset {name!r}: the root folder {root} {found}. {_LAYOUT_HELP}.")
    refs = [rel.split("/", 1)[0] for rel in in_folders]
    return in_folders, refs, len(files) - len(in_folders)


def _labelled_by_file(
    name: str, root: Path, labels_file: Path
) -> tuple[list[str], list[str | int], int]:
    files = [rel for rel, _ in walk_tree(root, IMAGE_SUFFIXES, sizes=False).files]
    present = set(files)
    by_stem: dict[str, str | None] = {}
    for rel in files:  # 'val_001' in a labels file may name 'val_001.JPEG'
        stem = os.path.splitext(rel)[0]
        by_stem[stem] = None if stem in by_stem else rel
    entries: dict[str, str | int] = {}
    missing: list[str] = []
    for number, line in enumerate(_lines(name, labels_file), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(
                f"dataset {name!r}: line {number} of the labels file {labels_file} is "
                f"{line.strip()!r}. Expected '<image> <class>': an image path relative to "
                f"{root}, a space, and a class id (e.g. n01440764) or a 0-based class index."
            )
        image, cls = parts
        rel = image if image in present else by_stem.get(image)
        if rel is None:
            missing.append(image)
            continue
        if rel in entries:
            raise DatasetError(
                f"dataset {name!r}: the labels file {labels_file} lists {image} twice (again on "
                f"line {number}). Expected one '<image> <class>' line per image."
            )
        entries[rel] = int(cls) if _INTEGER.fullmatch(cls) else cls
    if missing:
        raise DatasetError(
            f"dataset {name!r}: the labels file {labels_file} names {len(missing)} images that "
            f"are not under {root} (e.g. {', '.join(missing[:3])}). Expected image paths "
            "relative to `root:`."
        )
    if not entries:
        raise DatasetError(
            f"dataset {name!r}: the labels file {labels_file} has no '<image> <class>' lines. "
            f"{_LAYOUT_HELP}."
        )
    rel_paths = sorted(entries)
    return rel_paths, [entries[rel] for rel in rel_paths], len(files) - len(rel_paths)


def _boxes_of(index: BoxIndex | None, table: BoxTable | None, rel_path: str, class_id: str
              ) -> tuple[Box, ...] | None:
    """The image's boxes of its own class; () without a box file, None for a broken one."""
    xml = index.find(Path(rel_path).stem, class_id) if index is not None else None
    if xml is None or table is None:
        return ()
    try:
        return boxes_of_class(table.objects(xml), class_id, xml)
    except BoxFileError:
        return None


def _class_list(
    name: str, paths: FolderPaths, refs: list, declared: list[str] | None
) -> list[str]:
    """The class list labels index into; every reference is checked against it."""
    ints = [r for r in refs if isinstance(r, int)]
    names = {r for r in refs if not isinstance(r, int)}
    if declared is not None:
        classes, source = declared, f"the classes file {paths.classes}"
    elif names and ints:
        raise DatasetError(
            f"dataset {name!r}: the labels file {paths.labels} mixes class ids and integer class "
            "indices. Expected one kind; integer indices need a `classes` file or ImageNet-1k."
        )
    elif names and not _all_imagenet1k(names):
        return sorted(names)
    else:
        classes, source = list(imagenet1k_classes()), "ImageNet-1k (timm's class order)"
    unknown = sorted(names - set(classes))
    out_of_range = sorted({i for i in ints if i >= len(classes)})
    if unknown or out_of_range:
        bad = ", ".join([*unknown[:3], *map(str, out_of_range[:3])])
        raise DatasetError(
            f"dataset {name!r} (root {paths.root}): classes {bad} are not in {source}, which has "
            f"{len(classes)} classes. Expected class ids from that list, or 0-based indices into "
            "it; give a `classes` file listing every class in label order."
        )
    return classes


def _all_imagenet1k(names: set[str]) -> bool:
    """True if every name is an ImageNet-1k WordNet id (timm is loaded only for wnid-like names)."""
    return all(_WNID.fullmatch(n) for n in names) and names <= set(imagenet1k_classes())


def _lines(name: str, path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(
            f"dataset {name!r}: cannot read {path} ({e}). Expected a UTF-8 text file."
        ) from e
