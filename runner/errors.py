"""Every error a user can cause, in one place: a bad study file, a plan the models or data
cannot satisfy, a model or dataset that cannot be opened, a store or database that cannot be
used. The CLI catches ``UserError`` and prints its message as one paragraph with exit status 2;
anything else is a bug and keeps its traceback.

``PlanError`` and its subclasses stay ``ValueError``s: they are raised inside pydantic
validators and kind checks, where that is the expected type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix; the message names what is wrong and the way out."""


class SpecError(UserError, ValueError):
    """An invalid study file: says where (file, line, key) and what was expected."""

    def __init__(self, path: Path | str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = str(path), line, key, message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


class ExpansionError(UserError, ValueError):
    """A study file whose aliases expand past the node limit (a "billion laughs" file);
    ``line`` is where the expansion went too far, for the ``SpecError`` that reports it."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class PlanError(UserError, ValueError):
    """A study is invalid in a way only a kind or a model can see (a bad layer, a feature out of
    range, a model without a CLS token): found while planning, before anything runs."""


class ModelError(PlanError):
    """A model entry, weights file, site or feature index that cannot be used; ``field`` names
    the entry's key at fault (``name``, ``pretrained``, ``kwargs``) when one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatasetError(UserError, ValueError):
    """A dataset that cannot be read as declared; the message names it, the path and the fix."""


class DeviceError(UserError, ValueError):
    """A ``--device`` this machine does not have (no CUDA, an index past the last GPU)."""


class StoreError(UserError, RuntimeError):
    """An artifact store that cannot be used: not a store, another database's, unwritable."""


class SchemaError(UserError, RuntimeError):
    """A database whose schema this version cannot read (newer) or must not touch (foreign)."""


class DatabaseUnusable(UserError, RuntimeError):
    """A result database that cannot be opened as given: a URL that does not parse, no driver
    installed for it. The message leaves the URL out: the caller names it."""


class DatabaseMissing(UserError, RuntimeError):
    """A command that only reads was pointed at a database that does not exist (the message
    names its URL)."""


class EmptyDatabase(DatabaseMissing):
    """The database exists but holds no vitstudy tables: to a reader, as good as missing."""


class SettingError(UserError, ValueError):
    """An environment variable (``VITSTUDY_*``) whose value vitstudy cannot use."""


class KindError(UserError):
    """A study kind that is not installed, or an installed kind package that is broken."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The candidates that look most like ``name`` (edit distance, then shared substrings)."""
    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    found = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=n, cutoff=0.6)]
    if len(found) < n:
        stem = name.lower().split(".")[0]
        shared = [c for c in pool if stem and stem in c.lower() and c not in found]
        found += shared[: n - len(found)]
    return found[:n]
