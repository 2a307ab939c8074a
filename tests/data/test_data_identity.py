"""Dataset identity: content, not path; the fingerprint cache; cheap, torch-free planning."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.data import check_dataset, dataset_identity
from runner.data import fingerprint as fp
from runner.errors import DatasetError
from runner.schema import ImagenetDataset, Subset, SyntheticDataset
from tests.data.datafiles import voc_xml, write_image


def make_folder(base: Path) -> Path:
    """base/{train/<class>/*.png, boxes/*.xml, labels.txt}; returns base."""
    write_image(base / "train" / "n01" / "a.png", seed=1)
    write_image(base / "train" / "n02" / "b.png", seed=2)
    (base / "boxes").mkdir(parents=True)
    (base / "boxes" / "a.xml").write_text(voc_xml([("n01", (1, 1, 4, 4))]))
    (base / "classes.txt").write_text("n01\nn02\n")
    return base


def spec_at(base: Path, **kw) -> ImagenetDataset:
    return ImagenetDataset(kind="imagenet", root=str(base / "train"), boxes=str(base / "boxes"),
                           classes=str(base / "classes.txt"), **kw)


def test_identity_survives_move_and_copy(tmp_path: Path) -> None:
    base = make_folder(tmp_path / "one")
    before = dataset_identity(spec_at(base))
    shutil.copytree(base, tmp_path / "copy")
    assert dataset_identity(spec_at(tmp_path / "copy")) == before
    base.rename(tmp_path / "moved")
    assert dataset_identity(spec_at(tmp_path / "moved")) == before
    assert str(tmp_path) not in before


def test_identity_changes_with_content(tmp_path: Path) -> None:
    base = make_folder(tmp_path / "d")
    seen = {dataset_identity(spec_at(base))}

    write_image(base / "train" / "n02" / "c.png", seed=3)  # a file added
    seen.add(dataset_identity(spec_at(base)))

    replacement = base / "new.png"  # a file replaced by one of another size (save + rename)
    write_image(replacement, width=16, seed=1)
    os.replace(replacement, base / "train" / "n01" / "a.png")
    seen.add(dataset_identity(spec_at(base)))

    (base / "boxes" / "b.xml").write_text(voc_xml([("n02", (1, 1, 2, 2))]))  # a box file added
    seen.add(dataset_identity(spec_at(base)))

    (base / "classes.txt").write_text("n02\nn01\n")  # same size, other order: other labels
    seen.add(dataset_identity(spec_at(base)))
    assert len(seen) == 5


def test_identity_subset_part(tmp_path: Path) -> None:
    base = make_folder(tmp_path / "d")
    full = dataset_identity(spec_at(base))
    assert dataset_identity(spec_at(base, subset=Subset(seed=5))) == full  # keeps everything
    one = dataset_identity(spec_at(base, subset=Subset(per_class=1)))
    assert one != full
    assert dataset_identity(spec_at(base, subset=Subset(per_class=1, seed=1))) != one


def test_synthetic_identity_is_its_params_without_cache(tmp_path: Path) -> None:
    base = SyntheticDataset(kind="synthetic")
    ident = dataset_identity(base)
    assert dataset_identity(base.model_copy(update={"cache": str(tmp_path)})) == ident
    for change in ({"seed": 1}, {"split": "val"}, {"home_prob": 0.5}, {"corrupt": 1},
                   {"subset": Subset(limit=10)}):
        assert dataset_identity(base.model_copy(update=change)) != ident, change


def test_fingerprint_cache_is_used_and_invalidated(tmp_path: Path, monkeypatch) -> None:
    base = make_folder(tmp_path / "d")
    root = base / "train"
    old = 1_000_000_000
    for d in (root, root / "n01", root / "n02"):
        os.utime(d, (old, old))  # settled folders: their fingerprint may be cached
    first = fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES)
    assert list((fp.cache_root() / "fingerprints").glob("*.json"))

    def no_walk(*args, **kwargs):
        raise AssertionError("walked although the cache is valid")

    with monkeypatch.context() as patched:
        patched.setattr(fp, "walk_tree", no_walk)
        assert fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES) == first

    # Rewritten in place, folder mtimes unchanged: the cache cannot see it; refresh does.
    write_image(root / "n01" / "a.png", width=32, seed=1)
    os.utime(root / "n01", (old, old))
    assert fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES) == first
    refreshed = fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES, refresh=True)
    assert refreshed != first

    write_image(root / "n02" / "z.png", seed=4)  # touches n02's mtime: cache invalid
    assert fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES) not in (first, refreshed)


def test_fingerprint_of_fresh_folders_is_not_cached(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d") / "train"  # just written: mtimes are "racy"
    fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES)
    assert not list((fp.cache_root() / "fingerprints").glob("*.json"))


def test_fingerprint_digest_is_paths_and_sizes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d") / "train"
    (root / ".hidden.png").write_bytes(b"x")  # hidden and non-image files do not count
    (root / "n01" / "readme.txt").write_text("x")
    a, b = root / "n01" / "a.png", root / "n02" / "b.png"
    lines = f"n01/a.png\t{a.stat().st_size}\nn02/b.png\t{b.stat().st_size}\n"
    expected = hashlib.sha256(lines.encode()).hexdigest()
    assert fp.tree_fingerprint(root, fp.IMAGE_SUFFIXES) == expected


def test_missing_folders_are_dataset_errors(tmp_path: Path) -> None:
    base = make_folder(tmp_path / "d")
    missing_root = ImagenetDataset(kind="imagenet", root=str(tmp_path / "nope"))
    with pytest.raises(DatasetError) as e:
        check_dataset("val", missing_root)
    assert "'val'" in str(e.value) and str(tmp_path / "nope") in str(e.value)
    assert "does not exist" in str(e.value) and "Expected a folder of class folders" in str(e.value)
    with pytest.raises(DatasetError, match="'val'"):
        dataset_identity(missing_root, name="val")

    no_boxes = spec_at(base).model_copy(update={"boxes": str(tmp_path / "boxes-gone")})
    with pytest.raises(DatasetError) as e:
        check_dataset("train", no_boxes)
    assert "boxes folder" in str(e.value) and str(tmp_path / "boxes-gone") in str(e.value)
    assert "PASCAL-VOC" in str(e.value)

    not_a_dir = spec_at(base).model_copy(update={"root": str(base / "classes.txt")})
    with pytest.raises(DatasetError, match="is not a folder"):
        check_dataset("x", not_a_dir)
    no_labels = spec_at(base).model_copy(update={"labels": str(base / "labels.txt")})
    with pytest.raises(DatasetError, match="labels file .* does not exist"):
        check_dataset("x", no_labels)

    blocked = SyntheticDataset(kind="synthetic", cache=str(base / "classes.txt" / "sub"))
    with pytest.raises(DatasetError, match="is a file"):
        check_dataset("shapes", blocked)


def test_planning_does_not_import_torch(tmp_path: Path) -> None:
    base = make_folder(tmp_path / "d")
    code = (
        "import sys\n"
        "from runner.data import dataset_identity, check_dataset\n"
        "from runner.schema import ImagenetDataset, SyntheticDataset\n"
        f"spec = ImagenetDataset(kind='imagenet', root={str(base / 'train')!r})\n"
        "check_dataset('d', spec); dataset_identity(spec)\n"
        "s = SyntheticDataset(kind='synthetic'); check_dataset('s', s); dataset_identity(s)\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
