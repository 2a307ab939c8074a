"""The atlas's folder and its manifest: which files the atlas wrote, each with the digest of
what it was made from (like DVC's lock file), so a rebuild writes only the files whose inputs
changed and deletes only files it made that no feature needs any more.

A page's digest is the digest of its HTML (rendering a page is cheap; writing thousands is
not); an image's digest is that of its inputs (stored artifacts' digests, a ranking's rows), so
an unchanged image is never drawn again. The manifest is written before the first file and
again at the end: a build that stops midway leaves the files it had not finished marked
pending, and the next build redoes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.present.atlas_links import MANIFEST

#: The manifest's format.
FORMAT = 1
#: The digest of a file the atlas began writing and did not finish.
PENDING = ""
#: The process's file-creation mask (read once: setting it is the only way to read it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class AtlasFolderError(UserError):
    """An ``--out`` folder the atlas will not write into: it did not make it, or it holds the
    atlas of another study."""


@dataclass
class Output:
    """A file the atlas wants: its digest, and its bytes (a page) or how to make them (an
    image: bytes and whether they are final; a non-final file is redone by the next build)."""

    digest: str
    content: bytes | None = None
    make: Callable[[], tuple[bytes, bool]] | None = None


@dataclass(frozen=True)
class SyncResult:
    """What a build did to the folder."""

    written: int
    unchanged: int
    removed: int


def content_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class AtlasFolder:
    """The atlas's root folder, claimed for one study (``claim``), and its manifest."""

    def __init__(self, root: Path, study: str, files: dict[str, str]) -> None:
        self.root, self.study, self.files = root, study, files

    @classmethod
    def claim(cls, root: Path, study: str) -> AtlasFolder:
        """The folder, made if missing; refused (``AtlasFolderError``) when it holds files the
        atlas did not write or the atlas of another study."""
        manifest = root / MANIFEST
        if root.exists() and not root.is_dir():
            raise AtlasFolderError(f"{root} is a file, not a folder: give --out a folder for "
                                   "the atlas.")
        if root.is_dir() and not manifest.is_file():
            if any(root.iterdir()):
                raise AtlasFolderError(
                    f"{root} already holds files that `vitstudy atlas` did not write (it has no "
                    f"{MANIFEST}). The atlas writes only into a folder it made, since a rebuild "
                    "deletes the pages of features that are gone; give --out a new or empty "
                    "folder, or move this one away.")
            return cls._fresh(root, study)
        if not root.exists():
            return cls._fresh(root, study)
        found = _read_manifest(manifest)
        if found is None:
            raise AtlasFolderError(f"{manifest} cannot be read, so it is unclear which files "
                                   f"of {root} the atlas wrote; delete the folder and build the "
                                   "atlas again.")
        if found[0] != study:
            raise AtlasFolderError(f"{root} holds the atlas of study {found[0]!r}, not "
                                   f"{study!r}; give --out another folder (each study's atlas "
                                   "has its own, atlas/<study> by default).")
        return cls(root, study, found[1])

    @classmethod
    def _fresh(cls, root: Path, study: str) -> AtlasFolder:
        root.mkdir(parents=True, exist_ok=True)
        folder = cls(root, study, {})
        folder.save()
        return folder

    def save(self) -> None:
        """Write the manifest (atomically)."""
        text = json.dumps({"format": FORMAT, "study": self.study, "files": self.files},
                          indent=0, sort_keys=True)
        _write(self.root / MANIFEST, text.encode())

    def sync(self, outputs: dict[str, Output],
             progress: Callable[[int, int], None] | None = None) -> SyncResult:
        """Make the folder hold exactly ``outputs``: write those whose digest changed (or whose
        file is gone), delete the files of earlier builds no longer wanted."""
        todo = [p for p, o in outputs.items()
                if self.files.get(p) != o.digest or not (self.root / p).is_file()]
        stale = [p for p in self.files if p not in outputs]
        self.files.update({p: PENDING for p in todo})
        self.save()
        for done, path in enumerate(todo, 1):
            output = outputs[path]
            content, final = (output.content, True) if output.make is None else output.make()
            _write(self.root / path, content or b"")
            self.files[path] = output.digest if final else PENDING
            if progress is not None:
                progress(done, len(todo))
        for path in stale:
            self._remove(path)
        self.save()
        return SyncResult(len(todo), len(outputs) - len(todo), len(stale))

    def _remove(self, relative: str) -> None:
        """Delete a file the atlas made, and the folders it made that are left empty."""
        self.files.pop(relative, None)
        root = self.root.resolve()
        path = self.root / relative
        if not path.resolve().is_relative_to(root) or path.is_symlink():
            return
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent.resolve() != root and parent.resolve().is_relative_to(root):
            if any(parent.iterdir()):
                break
            parent.rmdir()
            parent = parent.parent


def _read_manifest(path: Path) -> tuple[str, dict[str, str]] | None:
    """(study, files) of a manifest, or None when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("study"), str):
        return None
    files = data.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return None
    return data["study"], {str(k): v for k, v in files.items()}


def _write(path: Path, content: bytes) -> None:
    """Write a file atomically (a temporary file beside it, then a rename), readable as any
    file the user makes (the temporary file's own mode is private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
