"""The error for a model name a library does not know, with the names it does know that look
most like it (``ModelError`` itself lives in ``runner.errors``)."""

from __future__ import annotations

from collections.abc import Iterable

from runner.errors import ModelError, close_matches


def unknown_model(source: str, name: str, candidates: Iterable[str], hint: str = "") -> ModelError:
    """The error for a model name the library does not know, with close matches."""
    matches = close_matches(name, candidates)
    msg = f"{source} has no model named {name!r}."
    if matches:
        msg += " Did you mean: " + ", ".join(matches) + "?"
    if hint:
        msg += " " + hint
    return ModelError(msg, field="name")
