"""What a run records about where it ran: code version, packages, device. Not hashed."""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from runner.errors import DeviceError

PACKAGES = ("vitstudy", "torch", "torchvision", "timm", "open_clip_torch", "numpy", "pillow",
            "sqlalchemy", "pandas")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_state(folder: Path) -> tuple[str | None, bool]:
    """(commit sha, dirty) of the git checkout holding ``folder``; (None, False) outside one."""
    try:
        sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if sha.returncode != 0:
            return None, False
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def provenance(device: str) -> dict[str, Any]:
    sha, dirty = git_state(Path(__file__).resolve().parent)
    return {"git_sha": sha, "git_dirty": dirty, "versions": package_versions(), "device": device}


_DEVICE = re.compile(r"(cpu|cuda|mps)(?::(\d+))?")


def check_device(device: str, *, here: bool = True) -> None:
    """Raise ``DeviceError`` unless ``device`` is ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``
    and, with ``here``, this machine has it: checked before a run writes anything, since a
    wrong device would otherwise fail every task (imports torch only for cuda and mps)."""
    if device == "auto":
        return
    m = _DEVICE.fullmatch(device)
    if m is None:
        raise DeviceError(f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N "
                          "(N = 0, 1, ...) or mps")
    if not here or m[1] == "cpu":
        return
    import torch

    if m[1] == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} is not available on this machine (no Apple MPS "
                          "backend); use --device cpu or auto")
    count = torch.cuda.device_count() if m[1] == "cuda" and torch.cuda.is_available() else 0
    if m[1] == "cuda" and int(m[2] or 0) >= count:
        raise DeviceError(f"device {device!r} is not available: this machine has {count} CUDA "
                          "device(s) that torch can use; use --device cpu or auto")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


#: Most decode processes ``auto`` starts for a GPU: ImageNet JPEGs decode at ~200 images/s per
#: core, so 8 keep a ViT-B forward (thousands of images/s) busier than fewer; more rarely help.
MAX_AUTO_WORKERS = 8


def resolve_workers(workers: int | None, device: str) -> int:
    """Data-loading processes: as given; ``None`` (auto) -> none on a CPU, where the model
    needs the cores, and up to ``MAX_AUTO_WORKERS`` (one core left free) on a GPU."""
    if workers is not None:
        return workers
    if not device.startswith("cuda"):
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores - 1))


def device_label(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
