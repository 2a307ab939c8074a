"""Study kinds, found by name through the ``vitstudy.kinds`` entry-point group.

Every kind, built in or from another package, registers the same way: an entry point
``<name> = "<package>:KIND"`` whose object is a ``Kind`` instance named ``<name>``. Loading a
kind imports only its declaration and params (no torch), so that planning stays fast.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points

from runner.errors import KindError
from runner.kinds.base import Kind, KindParams, TaskContext

GROUP = "vitstudy.kinds"

_cache: dict[str, Kind] = {}


@functools.cache
def _entry_points() -> dict[str, EntryPoint]:
    """Name -> entry point of every installed kind (the first one wins on a duplicate name);
    scanned once per process (each scan reads every installed distribution's metadata)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        found.setdefault(point.name, point)
    return found


def available_kinds() -> list[str]:
    """Names of the installed kinds, sorted."""
    return sorted(_entry_points())


def get_kind(name: str) -> Kind:
    """The kind registered as ``name``; KeyError when none is; ``KindError`` when the package
    registering it cannot be imported or does not hold a ``Kind`` of that name."""
    if name not in _cache:
        point = _entry_points().get(name)
        if point is None:
            raise KeyError(name)
        try:
            kind = point.load()
        except Exception as error:  # noqa: BLE001 - a broken plugin is the user's to mend
            raise KindError(f"study kind {name!r} is installed ({point.value}) but cannot be "
                            f"imported: {type(error).__name__}: {error}") from error
        if not isinstance(kind, Kind) or kind.name != name:
            raise KindError(f"entry point {name!r} ({point.value}) of group {GROUP!r} must be "
                            f"a Kind instance named {name!r}; it is {kind!r}")
        _cache[name] = kind
    return _cache[name]


__all__ = ["GROUP", "Kind", "KindParams", "TaskContext", "available_kinds", "get_kind"]
