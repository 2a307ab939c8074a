"""Names made safe for files, and a task's counters as one line of text."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

#: Numbers in a task's ``info`` that are run settings (provenance), not counters.
_SETTINGS = frozenset({"batch_size", "workers", "seed", "depth"})


def slug(text: str, limit: int = 48) -> str:
    """A file-name stem for any name: its ASCII letters and digits (at most ``limit``), then a
    short hash of the whole name, so names differing only in other characters stay apart."""
    readable = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:limit].strip("_")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable or 'model'}_{digest}"


def counters(info: Any) -> str:
    """``name=value, ...`` of the non-zero counters in a task's stored ``info`` JSON (run
    settings such as the batch size left out); empty when there are none."""
    parsed = json.loads(info) if isinstance(info, str) and info else {}
    return ", ".join(f"{k}={v}" for k, v in sorted(parsed.items())
                     if isinstance(v, int | float) and v and k not in _SETTINGS)
