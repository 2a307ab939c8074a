"""The atlas's manifest: a second build rewrites nothing, a changed input rewrites only its file,
a file nobody wants any more is deleted (with the folders it leaves empty), an unfinished file
is redone, and only a folder the atlas made is ever written to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.atlas.manifest import PENDING, AtlasFolder, AtlasFolderError, Output, content_digest
from runner.present.atlas_links import MANIFEST, atlas_study


def page(text: str) -> Output:
    content = text.encode()
    return Output(content_digest(content), content=content)


def drawn(digest: str, log: list[str], *, final: bool = True) -> Output:
    """An image-like output: made only when written (``log`` records each time)."""

    def make() -> tuple[bytes, bool]:
        log.append(digest)
        return digest.encode(), final

    return Output(digest, make=make)


def outputs(log: list[str]) -> dict[str, Output]:
    return {"index.html": page("front"), "m/mlp-00/f00001.html": page("one"),
            "m/mlp-00/f00002.html": page("two"), "m/mlp-00/img/f00001.webp": drawn("a1", log),
            "m/mlp-00/img/f00002.webp": drawn("a2", log)}


def mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.name != MANIFEST}


def test_a_second_build_rewrites_nothing(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    first = AtlasFolder.claim(root, "s").sync(outputs(log))
    assert (first.written, first.unchanged, first.removed) == (5, 0, 0)
    assert log == ["a1", "a2"] and atlas_study(root) == "s"
    before = mtimes(root)
    again = AtlasFolder.claim(root, "s").sync(outputs(log))
    assert (again.written, again.unchanged, again.removed) == (0, 5, 0)
    assert log == ["a1", "a2"] and mtimes(root) == before  # nothing drawn, nothing touched


def test_a_changed_input_rewrites_only_its_file(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    AtlasFolder.claim(root, "s").sync(outputs(log))
    before = mtimes(root)
    changed = outputs(log) | {"m/mlp-00/img/f00002.webp": drawn("a2-new", log),
                              "m/mlp-00/f00002.html": page("two, new")}
    result = AtlasFolder.claim(root, "s").sync(changed)
    assert (result.written, result.unchanged) == (2, 3)
    after = mtimes(root)
    assert {p for p in after if after[p] != before[p]} == {"m/mlp-00/img/f00002.webp",
                                                           "m/mlp-00/f00002.html"}
    assert (root / "m/mlp-00/img/f00002.webp").read_bytes() == b"a2-new"


def test_a_removed_feature_goes_with_its_empty_folders(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    AtlasFolder.claim(root, "s").sync(outputs(log) | {"m/mlp-05/f00007.html": page("x"),
                                                      "m/mlp-05/img/f00007.webp": drawn("b", log)})
    (root / "m" / "notes.txt").write_text("mine")  # not the atlas's: never deleted
    result = AtlasFolder.claim(root, "s").sync(outputs(log))
    assert result.removed == 2
    assert not (root / "m" / "mlp-05").exists()
    assert (root / "m" / "notes.txt").read_text() == "mine"
    assert (root / "m/mlp-00/f00001.html").is_file()
    listed = json.loads((root / MANIFEST).read_text())["files"]
    assert set(listed) == set(outputs(log))


def test_an_unfinished_file_is_redone(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    partial = outputs(log) | {"m/mlp-00/img/f00002.webp": drawn("a2", log, final=False)}
    AtlasFolder.claim(root, "s").sync(partial)
    assert json.loads((root / MANIFEST).read_text())["files"]["m/mlp-00/img/f00002.webp"] == PENDING
    log.clear()
    result = AtlasFolder.claim(root, "s").sync(outputs(log))
    assert result.written == 1 and log == ["a2"]


def test_a_deleted_file_is_written_again(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    AtlasFolder.claim(root, "s").sync(outputs(log))
    (root / "m/mlp-00/f00001.html").unlink()
    assert AtlasFolder.claim(root, "s").sync(outputs(log)).written == 1
    assert (root / "m/mlp-00/f00001.html").read_text() == "one"


def test_only_a_folder_the_atlas_made_is_written(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "photo.jpg").write_bytes(b"x")
    with pytest.raises(AtlasFolderError, match="did not write"):
        AtlasFolder.claim(foreign, "s")
    assert [p.name for p in foreign.iterdir()] == ["photo.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    AtlasFolder.claim(empty, "s")  # an empty folder is taken
    with pytest.raises(AtlasFolderError, match="atlas of study 's'"):
        AtlasFolder.claim(empty, "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(AtlasFolderError, match="is a file"):
        AtlasFolder.claim(tmp_path / "file", "s")


def test_a_manifest_entry_outside_the_folder_is_never_deleted(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    AtlasFolder.claim(root, "s").sync(outputs(log))
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["files"]["../outside.txt"] = "x"
    (root / MANIFEST).write_text(json.dumps(manifest))
    AtlasFolder.claim(root, "s").sync(outputs(log))
    assert outside.read_text() == "keep"


def test_files_get_the_users_usual_mode(tmp_path: Path) -> None:
    root, log = tmp_path / "atlas", []
    AtlasFolder.claim(root, "s").sync(outputs(log))
    probe = tmp_path / "probe"
    probe.write_text("x")  # made as the user makes files
    mode = probe.stat().st_mode & 0o777
    assert {p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()} == {mode}
