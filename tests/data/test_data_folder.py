"""The ImageNet-layout reader: class order, labels files, boxes, subsets, decoding, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data import open_dataset
from runner.data.folder import imagenet1k_classes
from runner.data.subset import select_subset
from runner.errors import DatasetError
from runner.schema import ImagenetDataset, Subset
from tests.data.datafiles import voc_xml, write_image

TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"


def imagenet(root: Path, **kw) -> ImagenetDataset:
    kw = {k: str(v) for k, v in kw.items() if k != "subset"} | (
        {"subset": kw["subset"]} if "subset" in kw else {})
    return ImagenetDataset(kind="imagenet", root=str(root), **kw)


def test_timm_imagenet_order_is_sorted_wnids() -> None:
    classes = imagenet1k_classes()
    assert len(classes) == 1000 and list(classes) == sorted(classes)
    assert classes[0] == TENCH and classes[1] == GOLDFISH and classes[999] == TOILET_TISSUE


def test_wnid_folders_get_imagenet_1k_labels(tmp_path: Path) -> None:
    for i, wnid in enumerate((TOILET_TISSUE, TENCH, GOLDFISH)):
        write_image(tmp_path / wnid / f"{wnid}_{i}.JPEG", seed=i)
    ds = open_dataset("val", imagenet(tmp_path))
    assert len(ds.classes) == 1000
    assert [(s.path.parent.name, s.label) for s in ds.samples] == [
        (TENCH, 0), (GOLDFISH, 1), (TOILET_TISSUE, 999)]
    assert ds.info["no_boxes"] == 3 and ds.info["images"] == 3


def test_other_folder_names_are_sorted_and_stray_images_counted(tmp_path: Path) -> None:
    write_image(tmp_path / "zebra" / "z1.png")
    write_image(tmp_path / "zebra" / "deeper" / "z2.png")  # nested images belong to the class
    write_image(tmp_path / "apple" / "a1.jpg")
    write_image(tmp_path / "stray.png")
    (tmp_path / "apple" / "notes.txt").write_text("not an image")
    ds = open_dataset("d", imagenet(tmp_path))
    assert ds.classes == ["apple", "zebra"]
    assert [s.label for s in ds.samples] == [0, 1, 1]
    assert ds.info["unlabelled"] == 1


def test_classes_file_sets_the_order(tmp_path: Path) -> None:
    write_image(tmp_path / "data" / "zebra" / "z.png")
    write_image(tmp_path / "data" / "apple" / "a.png")
    (tmp_path / "classes.txt").write_text("zebra  striped horse\n\napple\nkiwi\n")
    ds = open_dataset("d", imagenet(tmp_path / "data", classes=tmp_path / "classes.txt"))
    assert ds.classes == ["zebra", "apple", "kiwi"]
    assert {s.path.name: s.label for s in ds.samples} == {"a.png": 1, "z.png": 0}

    (tmp_path / "classes.txt").write_text("zebra\n")
    with pytest.raises(DatasetError, match="classes apple are not in the classes file"):
        open_dataset("d", imagenet(tmp_path / "data", classes=tmp_path / "classes.txt"))
    (tmp_path / "classes.txt").write_text("zebra\napple\nzebra\n")
    with pytest.raises(DatasetError, match="lists zebra twice"):
        open_dataset("d", imagenet(tmp_path / "data", classes=tmp_path / "classes.txt"))


def test_labels_file_layout(tmp_path: Path) -> None:
    root = tmp_path / "val"
    for i in range(3):
        write_image(root / f"ILSVRC2012_val_{i:08d}.JPEG", seed=i)
    write_image(root / "unlisted.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"# image class\nILSVRC2012_val_00000002.JPEG {TOILET_TISSUE}\n\n"
                      f"ILSVRC2012_val_00000000.JPEG {GOLDFISH}\n"
                      f"ILSVRC2012_val_00000001 {TENCH}\n")  # the extension may be left out
    ds = open_dataset("val", imagenet(root, labels=labels))
    assert [(s.path.name[-10:], s.label) for s in ds.samples] == [
        ("00000.JPEG", 1), ("00001.JPEG", 0), ("00002.JPEG", 999)]
    assert ds.info["unlabelled"] == 1

    labels.write_text("ILSVRC2012_val_00000000.JPEG 2\nILSVRC2012_val_00000001.JPEG 999\n")
    ds = open_dataset("val", imagenet(root, labels=labels))  # 0-based indices into ImageNet-1k
    assert [s.label for s in ds.samples] == [2, 999] and ds.classes[999] == TOILET_TISSUE

    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    labels.write_text("ILSVRC2012_val_00000000.JPEG 1\nILSVRC2012_val_00000001.JPEG cat\n")
    ds = open_dataset("val", imagenet(root, labels=labels, classes=tmp_path / "classes.txt"))
    assert [s.label for s in ds.samples] == [1, 0]


@pytest.mark.parametrize(("text", "message"), [
    ("ILSVRC2012_val_00000000.JPEG\n", "line 1 of the labels file .* Expected '<image> <class>'"),
    ("missing.JPEG n01440764\n", "names 1 images that are not under"),
    ("ILSVRC2012_val_00000000.JPEG 1\nILSVRC2012_val_00000000.JPEG 2\n", "twice"),
    ("ILSVRC2012_val_00000000.JPEG 1000\n", "classes 1000 are not in ImageNet-1k"),
    ("ILSVRC2012_val_00000000.JPEG 1\nILSVRC2012_val_00000001.JPEG n01440764\n", "mixes"),
    ("# nothing\n", "has no '<image> <class>' lines"),
])
def test_bad_labels_files(tmp_path: Path, text: str, message: str) -> None:
    for i in range(2):
        write_image(tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG")
    (tmp_path / "labels.txt").write_text(text)
    with pytest.raises(DatasetError, match=message) as e:
        open_dataset("val", imagenet(tmp_path / "val", labels=tmp_path / "labels.txt"))
    assert "dataset 'val'" in str(e.value)


def test_empty_or_flat_root_without_labels(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        open_dataset("e", imagenet(tmp_path / "empty"))
    write_image(tmp_path / "flat" / "a.png")
    with pytest.raises(DatasetError, match="holds 1 images directly but no class folders"):
        open_dataset("f", imagenet(tmp_path / "flat"))


def test_boxes_in_val_layout_keep_only_the_image_class(tmp_path: Path) -> None:
    write_image(tmp_path / "val" / TENCH / "v1.JPEG")
    write_image(tmp_path / "val" / TENCH / "v2.JPEG")
    write_image(tmp_path / "val" / GOLDFISH / "v3.JPEG")
    write_image(tmp_path / "val" / GOLDFISH / "v4.JPEG")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "v1.xml").write_text(voc_xml([(TENCH, (1, 2, 3, 4)), (GOLDFISH, (1, 1, 8, 6)),
                                           (TENCH, (5, 1, 8, 6))]))
    (boxes / "v3.xml").write_text(voc_xml([(TENCH, (1, 1, 2, 2))]))  # only another class
    (boxes / "v4.xml").write_text("<annotation><object>")  # broken
    ds = open_dataset("val", imagenet(tmp_path / "val", boxes=boxes))
    assert [s.boxes for s in ds.samples] == [((0, 1, 2, 3), (4, 0, 7, 5)), (), (), ()]
    assert ds.info["no_boxes"] == 3 and ds.info["boxes"] == 2 and ds.info["bad_box_files"] == 1


def test_box_files_are_parsed_once_and_again_after_a_change(tmp_path: Path, monkeypatch) -> None:
    import runner.data.boxes as boxes_module

    parsed = []
    read = boxes_module.read_voc_objects
    monkeypatch.setattr(boxes_module, "read_voc_objects", lambda path: parsed.append(path.name)
                        or read(path))
    for i in range(3):
        write_image(tmp_path / "val" / TENCH / f"v{i}.JPEG")
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "v0.xml").write_text(voc_xml([(TENCH, (1, 2, 3, 4))]))
    (boxes / "v1.xml").write_text("<annotation><object>")  # broken: remembered as broken
    spec = imagenet(tmp_path / "val", boxes=boxes)
    first = open_dataset("val", spec)
    assert sorted(parsed) == ["v0.xml", "v1.xml"] and first.info["box_files_parsed"] == 2
    parsed.clear()
    again = open_dataset("val", spec)
    assert parsed == [] and again.info["box_files_parsed"] == 0
    assert [s.boxes for s in again.samples] == [s.boxes for s in first.samples]
    assert again.info["bad_box_files"] == first.info["bad_box_files"] == 1
    (boxes / "v2.xml").write_text(voc_xml([(TENCH, (2, 2, 5, 5))]))  # a new file: re-read
    changed = open_dataset("val", spec)
    assert sorted(parsed) == ["v0.xml", "v1.xml", "v2.xml"]
    assert [s.boxes for s in changed.samples] == [((0, 1, 2, 3),), (), ((1, 1, 4, 4),)]


def test_boxes_in_train_layout(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / TENCH / f"{TENCH}_7.JPEG")
    write_image(tmp_path / "train" / GOLDFISH / f"{GOLDFISH}_7.JPEG")
    (tmp_path / "boxes" / TENCH).mkdir(parents=True)
    (tmp_path / "boxes" / TENCH / f"{TENCH}_7.xml").write_text(voc_xml([(TENCH, (2, 2, 5, 5))]))
    ds = open_dataset("train", imagenet(tmp_path / "train", boxes=tmp_path / "boxes"))
    assert [s.boxes for s in ds.samples] == [((1, 1, 4, 4),), ()]


def test_select_subset_by_hand() -> None:
    labels = [0, 0, 0, 1, 1, 2]
    names = ["a", "b", "c"]
    assert select_subset(labels, names, None) == [0, 1, 2, 3, 4, 5]
    two = select_subset(labels, names, Subset(per_class=2, seed=0))
    assert len(two) == 5 and {3, 4, 5} <= set(two) and two == sorted(two)
    assert select_subset(labels, names, Subset(per_class=2, seed=0)) == two
    import random

    expected_a = sorted(random.Random("0/a").sample([0, 1, 2], 2))
    assert [i for i in two if labels[i] == 0] == expected_a
    limited = select_subset(labels, names, Subset(limit=3, seed=4))
    assert limited == sorted(random.Random(4).sample(range(6), 3))


def test_subset_is_deterministic_and_per_class_choice_is_independent(tmp_path: Path) -> None:
    for c in ("a", "b", "c"):
        for i in range(6):
            write_image(tmp_path / c / f"{c}{i}.png", width=2, height=2)
    pick = lambda **kw: [s.path.name for s in  # noqa: E731
                         open_dataset("d", imagenet(tmp_path, subset=Subset(**kw))).samples]
    chosen = pick(per_class=2, seed=0)
    assert len(chosen) == 6 and chosen == pick(per_class=2, seed=0)
    assert chosen != pick(per_class=2, seed=1)
    assert len(pick(per_class=2, limit=4, seed=0)) == 4
    for f in (tmp_path / "c").iterdir():
        f.unlink()
    (tmp_path / "c").rmdir()
    assert pick(per_class=2, seed=0) == [n for n in chosen if not n.startswith("c")]


@pytest.mark.parametrize(("mode", "suffix"), [("L", ".png"), ("RGBA", ".png"), ("P", ".png"),
                                              ("CMYK", ".jpg"), ("RGB", ".bmp")])
def test_decode_converts_to_rgb_uint8(tmp_path: Path, mode: str, suffix: str) -> None:
    path = tmp_path / "c" / f"img{suffix}"
    expected = write_image(path, width=7, height=5, mode=mode)
    image = open_dataset("d", imagenet(tmp_path)).decode(0)
    assert image.dtype == torch.uint8 and image.shape == (3, 5, 7)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)


def make_with_unreadable(root: Path) -> list[np.ndarray]:
    pixels = [write_image(root / "a" / f"{i}.png", width=4 + i, height=3, seed=i)
              for i in range(5)]
    (root / "a" / "2.png").write_bytes(b"not a png at all")
    (root / "a" / "4.png").write_bytes(Path(root / "a" / "4.png").read_bytes()[:40])  # truncated
    return pixels


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_skip_and_count_unreadable_images(tmp_path: Path, workers: int) -> None:
    pixels = make_with_unreadable(tmp_path)
    ds = open_dataset("d", imagenet(tmp_path))
    assert ds.decode(2) is None and ds.decode(4) is None
    batches = list(ds.batches(2, workers=workers))
    assert [b.indices.tolist() for b in batches] == [[0, 1], [3], []]
    assert [b.skipped for b in batches] == [0, 1, 1]
    assert [len(b) for b in batches] == [2, 1, 0]
    assert batches[0].labels.dtype == torch.int64 and batches[2].labels.shape == (0,)
    for b in batches:
        for i, img in zip(b.indices.tolist(), b.images, strict=True):
            assert np.array_equal(img.permute(1, 2, 0).numpy(), pixels[i])
    picked = list(ds.batches(10, indices=[3, 0, 2], workers=workers))
    assert [b.indices.tolist() for b in picked] == [[3, 0]] and picked[0].skipped == 1


def test_decode_mask_reads_nonzero_pixels(tmp_path: Path) -> None:
    from dataclasses import replace

    write_image(tmp_path / "a" / "x.png")
    mask = np.zeros((6, 8), dtype=np.uint8)
    mask[1:3, 2:5] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    ds = open_dataset("d", imagenet(tmp_path))
    assert ds.decode_mask(0) is None
    ds.samples[0] = replace(ds.samples[0], mask_path=tmp_path / "m.png")
    assert torch.equal(ds.decode_mask(0), torch.from_numpy(mask > 0))
