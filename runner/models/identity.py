"""A model entry's identity for task keys: what determines its weights, never where files live.

Library models are named by source, name and pretrained tag; a local weights file by the
SHA-256 of its bytes, cached by (path, size, mtime) so that planning a large study hashes each
file once. This module imports neither torch nor timm: the planner calls it for every task.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from runner.errors import ModelError
from runner.schema import ModelSpec

_HASH_CACHE_FILE = "file_sha256.json"
_memory_hashes: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    """Folder for vitstudy's small caches (``VITSTUDY_CACHE``, default ~/.cache/vitstudy)."""
    return Path(os.environ.get("VITSTUDY_CACHE") or Path.home() / ".cache" / "vitstudy")


def resolve_path(path: str | Path, base_dir: Path | None) -> Path:
    """A spec path made absolute: ``~`` expanded, relative paths taken from ``base_dir``."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p.resolve()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached on disk by (absolute path, size, mtime)."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise ModelError(f"cannot read weights file {p}: {e.strerror or e}") from e
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key in _memory_hashes:
        return _memory_hashes[key]
    cache_file = cache_dir() / _HASH_CACHE_FILE
    cache = _read_json(cache_file)
    entry = cache.get(key[0])
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        digest = entry["sha256"]
    else:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        cache = _read_json(cache_file)  # re-read: another process may have added entries
        cache[key[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        _write_json_atomic(cache_file, cache)
    _memory_hashes[key] = digest
    return digest


def model_identity(spec: ModelSpec, base_dir: Path | None = None) -> str:
    """Canonical string naming the model's weights and everything else that changes results.

    ``timm:vit_base_patch16_384.orig_in21k_ft_in1k``, ``timm:resnet50@sha256:<hex>``,
    ``timm:vit_tiny_patch16_224@random-init {"kwargs": {...}}``. Paths never appear.
    """
    if spec.source == "checkpoint":
        weights = _existing(spec.path, base_dir, "path")
        head = f"checkpoint:{spec.arch}@sha256:{file_sha256(weights)}"
    else:
        head = f"{spec.source}:{spec.name}{_weights_tag(spec, base_dir)}"
    extras: dict[str, Any] = {}
    if spec.kwargs:
        extras["kwargs"] = spec.kwargs
    if spec.num_classes is not None:
        extras["num_classes"] = spec.num_classes
    if spec.preprocess is not None:
        overrides = spec.preprocess.model_dump(exclude_none=True)
        if overrides:
            extras["preprocess"] = overrides
    if spec.zero_shot is not None:
        zs = spec.zero_shot.model_dump()
        if zs["classnames"] != "imagenet":
            names_file = _existing(zs["classnames"], base_dir, "zero_shot")
            zs["classnames"] = "sha256:" + file_sha256(names_file)
        extras["zero_shot"] = zs
    if not extras:
        return head
    return head + " " + json.dumps(extras, sort_keys=True, separators=(",", ":"), default=str)


def _weights_tag(spec: ModelSpec, base_dir: Path | None) -> str:
    """The part of the identity that says which weights a library model gets."""
    if spec.train is not None:
        return "@random-init"  # the upstream train task's key carries the trained weights
    if spec.weights:
        return "@sha256:" + file_sha256(_existing(spec.weights, base_dir, "weights"))
    if spec.pretrained is False:
        return "@random-init"
    if spec.pretrained is True:
        return ""  # the name (possibly with a timm tag) says it all
    if spec.source == "timm":
        return "." + spec.pretrained  # timm writes tags as name.tag
    if spec.source == "open_clip" and _looks_like_path(spec.pretrained):
        return "@sha256:" + file_sha256(_existing(spec.pretrained, base_dir, "pretrained"))
    return "@" + spec.pretrained


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _existing(path: str | None, base_dir: Path | None, field: str) -> Path:
    """The file an entry's ``field`` names, resolved; ModelError (naming ``field``) if absent."""
    if not path:
        raise ModelError("a model entry names no weights file", field=field)
    p = resolve_path(path, base_dir)
    if not p.is_file():
        raise ModelError(
            f"weights file {p} does not exist (from `{path}`"
            + (f", relative to {base_dir}" if base_dir is not None else "")
            + "). Relative paths are taken from the study file's folder.",
            field=field,
        )
    return p


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, sort_keys=True, indent=0)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs re-hashing
