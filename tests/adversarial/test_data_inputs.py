"""Adversarial data: odd image modes decode to the right pixels, broken files are skipped, box
files with impossible coordinates cost only themselves, and a dataset whose every image is
unreadable is refused with an error naming the folder (by validate, and by the data loop).

Decode cases compare ``read_rgb`` with a numpy reference computed from the pixels written;
dataset cases read real folders with ``read_folder``; the last cases run ``vitstudy run`` on a
tiny study (a 2-block ViT on 32-pixel images) and check the exit status, message and rows.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runner.data.decode import read_rgb
from runner.data.folder import FolderPaths, read_folder
from runner.errors import DatasetError
from tests.adversarial.harness import Case, check_case
from tests.data.datafiles import voc_xml, write_image

RNG = np.random.default_rng(11)
H, W = 5, 7


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Box tables and fingerprints go to the case's own (ignored) cache folder."""
    monkeypatch.setenv("VITSTUDY_CACHE", str(tmp_path / ".vitstudy-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ------------------------------------------------------------------------------ decoding


def _wide_grey(mode: str, suffix: str) -> Callable[[Path], np.ndarray]:
    """A 16-bit greyscale file in ``mode``; the reference is round(v / 257) on every channel."""

    def write(path: Path) -> np.ndarray:
        values = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
        values[0, 0], values[0, 1] = 0, 65535
        if mode == "I;16B":
            image = Image.frombytes(mode, (W, H), values.astype(">u2").tobytes())
        elif mode == "I":
            image = Image.fromarray(values.astype(np.int32), "I")
        else:
            image = Image.fromarray(values)
        image.save(path.with_suffix(suffix))
        with Image.open(path.with_suffix(suffix)) as reopened:
            assert reopened.mode == mode  # the file really is in the mode under test
        return np.repeat(np.rint(values / 257.0).astype(np.uint8)[..., None], 3, axis=2)

    return write


def _palette(transparency: bool) -> Callable[[Path], np.ndarray]:
    def write(path: Path) -> np.ndarray:
        palette = RNG.integers(0, 256, (256, 3)).astype(np.uint8)
        index = RNG.integers(0, 256, (H, W)).astype(np.uint8)
        image = Image.fromarray(index, "P")
        image.putpalette(palette.tobytes())
        if transparency:
            image.info["transparency"] = int(index[0, 0])
        image.save(path.with_suffix(".png"))
        return palette[index]  # alpha dropped: the palette colour of every pixel

    return write


def _with_alpha(mode: str) -> Callable[[Path], np.ndarray]:
    def write(path: Path) -> np.ndarray:
        channels = 2 if mode == "LA" else 4
        pixels = RNG.integers(0, 256, (H, W, channels)).astype(np.uint8)
        pixels[..., -1] = 0  # fully transparent: the colour must survive anyway
        Image.fromarray(pixels, mode).save(path.with_suffix(".png"))
        colour = pixels[..., :-1]
        return np.repeat(colour, 3, axis=2) if mode == "LA" else colour

    return write


def _cmyk(path: Path) -> np.ndarray:
    cmyk = RNG.integers(0, 256, (H, W, 4)).astype(np.float64)
    Image.fromarray(cmyk.astype(np.uint8), "CMYK").save(path.with_suffix(".tif"))
    return np.rint((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255).astype(np.uint8)


def _grey(path: Path) -> np.ndarray:
    grey = RNG.integers(0, 256, (H, W)).astype(np.uint8)
    Image.fromarray(grey, "L").save(path.with_suffix(".png"))
    return np.repeat(grey[..., None], 3, axis=2)


def _bilevel(path: Path) -> np.ndarray:
    bits = RNG.random((H, W)) < 0.5
    Image.fromarray(bits).save(path.with_suffix(".png"))
    return np.repeat(np.where(bits, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


def _float(path: Path) -> np.ndarray:
    values = RNG.random((H, W)).astype(np.float32)
    Image.fromarray(values, "F").save(path.with_suffix(".tif"))
    return np.repeat(np.rint(values * 255.0).astype(np.uint8)[..., None], 3, axis=2)


DECODE_CASES = {
    "png-16bit-I;16": _wide_grey("I;16", ".png"),
    "tiff-16bit-I;16B": _wide_grey("I;16B", ".tif"),
    "tiff-32bit-I": _wide_grey("I", ".tif"),
    "tiff-float-F": _float,
    "palette": _palette(transparency=False),
    "palette-transparent": _palette(transparency=True),
    "grey-LA": _with_alpha("LA"),
    "rgba-transparent": _with_alpha("RGBA"),
    "cmyk": _cmyk,
    "grey-L": _grey,
    "bilevel-1": _bilevel,
}


@pytest.mark.parametrize("case", DECODE_CASES, ids=str)
def test_decode_matches_numpy(case: str, tmp_path: Path) -> None:
    reference = DECODE_CASES[case](tmp_path / "image")
    (path,) = tmp_path.glob("image.*")
    decoded = read_rgb(path)
    assert decoded is not None and decoded.dtype.is_floating_point is False
    assert decoded.shape == (3, H, W)
    np.testing.assert_array_equal(decoded.permute(1, 2, 0).numpy(), reference)


def _truncated(path: Path) -> None:
    write_image(path, 64, 48)
    path.write_bytes(path.read_bytes()[:200])


UNREADABLE = {
    "truncated-png": _truncated,
    "zero-bytes": lambda path: path.write_bytes(b""),
    "text-named-png": lambda path: path.write_text("not an image\n"),
    "directory-named-png": lambda path: path.mkdir(),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=str)
def test_unreadable_file_decodes_to_none(case: str, tmp_path: Path) -> None:
    path = tmp_path / "image.png"
    UNREADABLE[case](path)
    assert read_rgb(path) is None


# ------------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class BoxCase:
    """A two-image dataset (cls/a.png with the box file below, cls/b.png with a good box) and
    what reading it must give: image a's boxes as stored, after decode, and the bad-file count."""

    id: str
    xml: str
    stored: tuple
    decoded: tuple
    bad_files: int = 0

    def __str__(self) -> str:
        return self.id


GOOD_B = ((1, 1, 3, 2),)  # b.png's box, 0-based inclusive
BOX_CASES = [
    BoxCase("inside", voc_xml([("cls", (2, 2, 4, 3))]), ((1, 1, 3, 2),), ((1, 1, 3, 2),)),
    BoxCase("partly-outside-clipped", voc_xml([("cls", (5, 4, 40, 30))]),
            ((4, 3, 7, 5),), ((4, 3, 7, 5),)),
    BoxCase("wholly-outside-dropped", voc_xml([("cls", (20, 20, 30, 30))]), (), ()),
    BoxCase("outside-the-real-image", voc_xml([("cls", (12, 9, 40, 30))], width=64, height=48),
            ((11, 8, 39, 29),), ()),  # <size> lies: the decoded 8x6 image has no such pixels
    BoxCase("inf-coordinate", voc_xml([("cls", ("inf", 1, 3, 3))]), (), (), 1),
    BoxCase("nan-coordinate", voc_xml([("cls", (1, 1, "nan", 3))]), (), (), 1),
    BoxCase("huge-coordinate", voc_xml([("cls", (1, 1, "1e999", 3))]), (), (), 1),
    BoxCase("reversed-x", voc_xml([("cls", (6, 1, 2, 3))]), (), (), 1),
    BoxCase("reversed-y", voc_xml([("cls", (1, 5, 3, 2))]), (), (), 1),
    BoxCase("xml-garbage", "<annotation><object><name>cls</n", (), (), 1),
    BoxCase("text-coordinate", voc_xml([("cls", (1, "left", 3, 3))]), (), (), 1),
]


@pytest.mark.parametrize("case", BOX_CASES, ids=str)
def test_box_file(case: BoxCase, tmp_path: Path) -> None:
    root, boxes = tmp_path / "images", tmp_path / "boxes"
    for stem in ("a", "b"):
        write_image(root / "cls" / f"{stem}.png", width=8, height=6)
    boxes.mkdir()
    (boxes / "a.xml").write_text(case.xml)
    (boxes / "b.xml").write_text(voc_xml([("cls", (2, 2, 4, 3))]))
    dataset = read_folder("val", FolderPaths(root, boxes=boxes))
    assert [s.path.stem for s in dataset.samples] == ["a", "b"]
    assert dataset.samples[0].boxes == case.stored
    assert dataset.samples[1].boxes == GOOD_B  # one broken file costs only itself
    assert dataset.info["bad_box_files"] == case.bad_files
    (batch,) = dataset.batches(2)
    assert batch.boxes == [case.decoded, GOOD_B]


def test_a_directory_named_like_an_image_is_not_an_image(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_image(root / "cls" / "a.png")
    (root / "cls" / "b.png").mkdir()
    (root / "cls" / "b.png" / "c.png").write_bytes(b"")
    dataset = read_folder("val", FolderPaths(root))
    readable = [s.path.name for s in dataset.samples if read_rgb(s.path) is not None]
    assert readable == ["a.png"]
    assert all(s.path.is_file() for s in dataset.samples)


# ------------------------------------------------------------------- vitstudy run, end to end

STUDY = """\
    name: data-cases
    datasets:
      val: {kind: imagenet, root: data, boxes: boxes}
    models:
      tiny:
        source: timm
        name: vit_tiny_patch16_224
        pretrained: false
        kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2,
                 num_classes: 2}
    studies:
      - kind: %s
        models: [tiny]
        dataset: val
    """
WRITES = [r"^results\.db", r"^artifacts/"]
#: Absolute paths: the database engine is cached per URL in the process, and these cases run
#: in-process from different folders.
RUN = ["--db", "sqlite:///{dir}/results.db", "--artifacts", "{dir}/artifacts", "run", "{study}"]


def _dataset(images: Callable[[Path, int], None], box_xml: str | None = None
             ) -> Callable[[Path], None]:
    """A setup writing data/{cat,dog}/img{0,1}.png with ``images`` and one box file each,
    (boxes/img00.xml gets ``box_xml`` when given)."""

    def setup(folder: Path) -> None:
        (folder / "boxes").mkdir()
        for c, cls in enumerate(("cat", "dog")):
            for i in range(2):
                images(folder / "data" / cls / f"img{c}{i}.png", 2 * c + i)
                xml = voc_xml([(cls, (4, 4, 24, 24))], width=32, height=32)
                (folder / "boxes" / f"img{c}{i}.xml").write_text(xml)
        if box_xml is not None:
            (folder / "boxes" / "img00.xml").write_text(box_xml)

    return setup


def _good(path: Path, seed: int) -> None:
    write_image(path, 32, 32, seed=seed)


def _tasks(folder: Path) -> list[tuple[str, str, str | None, str | None]]:
    with sqlite3.connect(folder / "results.db") as con:
        return con.execute("SELECT kind, status, error, info FROM tasks ORDER BY kind").fetchall()


def _contents(data: bytes) -> Callable[[Path, int], None]:
    """An image writer that puts ``data`` (not an image) in every file."""

    def write(path: Path, seed: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return write


UNREADABLE_MESSAGE = (r"^error: .*study\.yaml:3: datasets\.val: dataset 'val': none of the 4 "
                      r"images tried of 4 under the folder .*data-cases-folder/data could be "
                      r"decoded")
ALL_UNREADABLE = [
    Case("all-unreadable-text-validate", ["validate", "{study}"], study=STUDY % "cls_isolation",
         setup=_dataset(_contents(b"not a png")), message=[UNREADABLE_MESSAGE]),
    Case("all-unreadable-zero-bytes-run", RUN, study=STUDY % "fgbg",
         setup=_dataset(_contents(b"")), message=[UNREADABLE_MESSAGE]),
    Case("all-unreadable-truncated-run", RUN, study=STUDY % "cls_isolation",
         setup=_dataset(_contents(b"\x89PNG\r\n\x1a\n\x00\x00")), message=[UNREADABLE_MESSAGE]),
]


@pytest.mark.parametrize("case", ALL_UNREADABLE, ids=str)
def test_all_unreadable_dataset_is_refused_naming_the_folder(case: Case, tmp_path: Path
                                                             ) -> None:
    folder = tmp_path / "data-cases-folder"  # the harness checks exit 2 and nothing written
    folder.mkdir()
    output = check_case(case, folder)
    assert "bounding box" not in output  # not blamed on the boxes


def test_all_unreadable_images_found_at_run_time_name_the_folder(tmp_path: Path) -> None:
    """Past the sample ``validate`` decodes (e.g. a subset of broken files), the data loop
    itself raises once it has seen every image and decoded none."""
    _dataset(_contents(b"GIF89a"))(tmp_path)
    dataset = read_folder("val", FolderPaths(tmp_path / "data"))
    batches = dataset.batches(3)
    assert [(len(b), b.skipped) for b in (next(batches), next(batches))] == [(0, 3), (0, 1)]
    with pytest.raises(DatasetError, match=r"dataset 'val': none of its 4 images could be "
                       rf"decoded .*under the folder {re.escape(str(tmp_path / 'data'))}"):
        next(batches)


def test_some_unreadable_images_are_skipped_and_counted(tmp_path: Path) -> None:
    def one_broken(path: Path, seed: int) -> None:
        (_good if seed else _contents(b""))(path, seed)

    case = Case("one-unreadable-of-4", RUN, exit=0, study=STUDY % "cls_isolation",
                setup=_dataset(one_broken), writes=WRITES, message=[r"1 image\(s\) skipped"])
    check_case(case, tmp_path)
    ((kind, status, error, info),) = _tasks(tmp_path)
    assert (kind, status, error) == ("cls_isolation", "done", None)
    assert json.loads(info)["skipped"] == 1


def test_an_inf_box_costs_one_box_file_and_is_reported_with_the_task(tmp_path: Path) -> None:
    bad = voc_xml([("cat", ("inf", 4, 24, 24))], width=32, height=32)
    case = Case("inf-box-fgbg", RUN, exit=0, study=STUDY % "fgbg",
                setup=_dataset(_good, bad), writes=WRITES,
                message=[r"1 unreadable box file\(s\) skipped"])
    check_case(case, tmp_path)
    ((kind, status, error, info),) = _tasks(tmp_path)
    assert (kind, status, error) == ("fgbg", "done", None)
    assert '"bad_box_files": 1' in info and '"no_boxes": 1' in info
    with sqlite3.connect(tmp_path / "results.db") as con:
        (n_images,) = con.execute("SELECT value FROM metrics WHERE name = 'n_images'").fetchone()
    assert n_images == 3  # the other three images keep their boxes


def test_an_inf_box_does_not_touch_kinds_without_boxes(tmp_path: Path) -> None:
    bad = voc_xml([("cat", (1, "inf", 24, 24))], width=32, height=32)
    case = Case("inf-box-cls-isolation", RUN, exit=0,
                study=STUDY % "cls_isolation", setup=_dataset(_good, bad), writes=WRITES)
    check_case(case, tmp_path)
    assert [row[:3] for row in _tasks(tmp_path)] == [("cls_isolation", "done", None)]
