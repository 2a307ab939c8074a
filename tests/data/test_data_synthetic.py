"""The synthetic world: deterministic, ImageNet layout, boxes = tight bbox of masks, atomic."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runner.data import open_dataset
from runner.data import synthetic as syn
from runner.data import synthetic_render as syn_render
from runner.data.synthetic_render import (
    BACKGROUNDS,
    SCALE_RANGE,
    SHAPES,
    home_backgrounds,
    render_image,
)
from runner.schema import Subset, SyntheticDataset

TINY = {"classes": 3, "train_per_class": 4, "val_per_class": 2, "size": 32}


def tiny(**kw) -> SyntheticDataset:
    return SyntheticDataset(kind="synthetic", **(TINY | kw))


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    a = files_of(syn.ensure_world(tiny(cache=str(tmp_path / "a"))))
    b = files_of(syn.ensure_world(tiny(cache=str(tmp_path / "b"))))
    assert a == b
    c = files_of(syn.ensure_world(tiny(cache=str(tmp_path / "c"), seed=1)))
    images = [k for k in a if k.startswith(("train/", "val/"))]
    assert len(images) == 18 and all(a[k] != c[k] for k in images)


def test_layout_and_counts(private_cache: Path) -> None:
    world = syn.ensure_world(tiny(corrupt=2))
    assert world == private_cache / "synthetic" / syn.world_id(tiny(corrupt=2))
    assert (world / "classes.txt").read_text().split() == list(SHAPES[:3])
    for split, n in (("train", 4), ("val", 2)):
        for cls in SHAPES[:3]:
            names = sorted(p.name for p in (world / split / cls).iterdir())
            expected = [f"{cls}_{i:05d}.png" for i in range(n)]
            corrupt = {"circle": ["corrupt_000.png"], "square": ["corrupt_001.png"]}
            assert names == sorted(expected + corrupt.get(cls, []))
        assert len(list((world / f"{split}_boxes").glob("*.xml"))) == 3 * n
        assert len(list((world / f"{split}_masks").glob("*.png"))) == 3 * n

    val = open_dataset("shapes-val", tiny(split="val", corrupt=2))
    assert val.classes == list(SHAPES[:3]) and len(val) == 8
    assert [s.label for s in val.samples] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert val.info["no_boxes"] == 2  # the two planted files
    assert sum(s.mask_path is None for s in val.samples) == 2


def test_default_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VITSTUDY_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert syn.world_dir(tiny()) == tmp_path / ".cache/vitstudy/synthetic" / syn.world_id(tiny())
    assert syn.world_dir(tiny(cache="/x")) == Path("/x/synthetic") / syn.world_id(tiny())


def test_masks_match_boxes_and_images(tmp_path: Path) -> None:
    ds = open_dataset("shapes", tiny())
    assert len(ds) == 12 and ds.info["no_boxes"] == 0
    for i, sample in enumerate(ds.samples):
        image, mask = ds.decode(i), ds.decode_mask(i)
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
        rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
        tight = (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))
        assert sample.boxes == (tight,)


def test_render_draws_the_mask_in_its_colour() -> None:
    r = render_image(3, "train", 1, 0, size=48, home_prob=0.7)
    assert r.image.dtype == np.uint8 and r.mask.dtype == bool and r.image.shape == (48, 48, 3)
    inside = r.image[r.mask].astype(float).mean(0)
    outside = r.image[~r.mask].astype(float).mean(0)
    assert np.linalg.norm(inside - outside) > 30  # the shape stands out from its background


def test_shape_sizes_and_home_backgrounds() -> None:
    homes = home_backgrounds(0)
    assert sorted(homes) == sorted(BACKGROUNDS)
    sides = []
    for c in range(len(SHAPES)):
        always = [render_image(0, "train", c, i, size=64, home_prob=1.0) for i in range(6)]
        never = [render_image(0, "train", c, i, size=64, home_prob=0.0) for i in range(6)]
        assert {r.background for r in always} == {homes[c]}
        assert homes[c] not in {r.background for r in never}
        sides += [max(r.box[2] - r.box[0], r.box[3] - r.box[1]) + 1 for r in always]
    # every shape fits its disc (diameter SCALE_RANGE x side) and fills most of it
    assert min(sides) >= 0.7 * SCALE_RANGE[0] * 64 and max(sides) <= SCALE_RANGE[1] * 64 + 1


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    ds = open_dataset("shapes", tiny(corrupt=2))
    assert len(ds) == 14
    batches = list(ds.batches(5))
    assert sum(b.skipped for b in batches) == 2 and sum(len(b) for b in batches) == 12


def test_world_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny()
    first = syn.ensure_world(spec)

    def fail(*args, **kwargs):
        raise AssertionError("generated twice")

    monkeypatch.setattr(syn, "write_world", fail)
    assert syn.ensure_world(spec) == first
    assert len(open_dataset("s", tiny(subset=Subset(per_class=1)))) == 3


def test_concurrent_generation_yields_one_valid_world(tmp_path: Path) -> None:
    code = (
        "from runner.data.synthetic import ensure_world\n"
        "from runner.schema import SyntheticDataset\n"
        f"print(ensure_world(SyntheticDataset(kind='synthetic', cache={str(tmp_path)!r}, "
        "classes=3, train_per_class=20, val_per_class=5, size=32)))\n"
    )
    root = Path(__file__).parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs[0] == outs[1]
    world = Path(outs[0])
    assert (world / "world.json").is_file()
    assert len(list((world / "train_boxes").glob("*.xml"))) == 60
    assert [p.name for p in world.parent.iterdir()] == [world.name]  # no temporary leftovers


def test_png_bytes_round_trip() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    assert np.array_equal(np.array(Image.open(io.BytesIO(syn.png_bytes(rgb)))), rgb)
    assert np.array_equal(np.array(Image.open(io.BytesIO(syn.png_bytes(grey)))), grey)


def test_contact_sheet_command(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    syn.main(["--out", str(out), "--per-class", "3", "--classes", "4", "--size", "32",
              "--boxes"])
    sheet = Image.open(out)
    assert sheet.size == (80 + 3 * 66, 4 * 66)
    assert not list(tmp_path.glob("synthetic"))  # drawn in memory, nothing cached


def test_colour_prob_gives_shapes_their_home_hue() -> None:
    import colorsys

    hues = syn_render.home_hues(0)
    assert sorted(hues) == [i / len(SHAPES) for i in range(len(SHAPES))]

    def hue_distance(r, c: int) -> float:
        red, green, blue = r.image[r.mask].astype(float).mean(0) / 255
        h = colorsys.rgb_to_hsv(red, green, blue)[0]
        return min(abs(h - hues[c]), 1 - abs(h - hues[c]))

    for c in range(len(SHAPES)):
        typed = [render_image(0, "val", c, i, size=64, home_prob=0.7, colour_prob=1.0)
                 for i in range(4)]
        assert max(hue_distance(r, c) for r in typed) < 0.05  # shading and noise keep the hue
    free = [hue_distance(render_image(0, "val", c, i, size=64, home_prob=0.7), c) > 0.05
            for c in range(len(SHAPES)) for i in range(4)]
    assert np.mean(free) > 0.5  # colour_prob 0: random colours, mostly far from the home hue
    base = tiny()
    assert syn.world_id(base) != syn.world_id(base.model_copy(update={"colour_prob": 0.5}))
