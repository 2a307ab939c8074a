"""What a run records about where it ran (code version, packages, device), and the run
settings resolved for that device (workers, ``--batch-size auto``). Not hashed."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import DeviceError

if TYPE_CHECKING:
    from runner.models.base import LoadedModel

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


#: ``--batch-size auto`` off a CUDA device: a CPU gains nothing from larger batches.
AUTO_BATCH_CPU = 64
#: The most ``auto`` chooses on a GPU: a ViT's throughput has stopped growing well before,
#: and a larger batch only delays the first results and holds more decoded images.
AUTO_BATCH_CAP = 512
#: Share of the free device memory ``auto`` fills with the probed per-image cost; the rest is
#: for what the probe does not see (decoded native images, a pass's variants, fragmentation).
AUTO_BATCH_SHARE = 0.5


def auto_batch_size(free_bytes: float, per_image_bytes: float, *, cap: int = AUTO_BATCH_CAP,
                    share: float = AUTO_BATCH_SHARE) -> int:
    """The ``auto`` rule: as many images as ``share`` of ``free_bytes`` holds at
    ``per_image_bytes`` each, at most ``cap``, rounded down to a multiple of 8 (what tensor
    cores tile) from 8 up, never below 1."""
    fit = cap if per_image_bytes <= 0 else int(free_bytes * share // per_image_bytes)
    size = min(cap, fit)
    return max(1, size - size % 8 if size >= 8 else size)


def resolve_batch_size(batch_size: int | str, device: str,
                       per_image_bytes: Callable[[], float]) -> int:
    """A run's batch size: as given; ``auto`` -> ``AUTO_BATCH_CPU`` off CUDA, else
    ``auto_batch_size`` of the device's free memory and ``per_image_bytes()`` (a probe)."""
    if batch_size != "auto":
        return int(batch_size)
    if not device.startswith("cuda"):
        return AUTO_BATCH_CPU
    import torch

    per_image = per_image_bytes()
    dev = torch.device(device)
    free, _ = torch.cuda.mem_get_info(dev)  # plus what torch holds cached and unused
    free += torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    return auto_batch_size(free, per_image)


def probe_image_bytes(model: LoadedModel, device: str, precision: str = "fp32",
                      sizes: tuple[int, int] = (4, 8)) -> float:
    """Device memory one more image costs: peak memory of a forward at ``precision`` with
    gradients to its input (the most any kind asks of a batch: visualize's optimization),
    measured at two batch ``sizes``, the difference per image (CUDA only)."""
    import torch

    from runner.kinds.base import precision_scope

    dev, side = torch.device(device), model.preprocess.size
    training = model.net.training
    model.net.eval()
    peaks = []
    try:
        for n in sizes:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
            x = torch.rand(n, 3, side, side, device=dev, requires_grad=True)
            with precision_scope(dev, precision):
                out = model(x)
            torch.autograd.grad(out.float().sum(), x)
            peaks.append(torch.cuda.max_memory_allocated(dev) - base)
            del x, out
    finally:
        model.net.train(training)
        torch.cuda.empty_cache()
    per_image = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    return per_image if per_image > 0 else peaks[1] / sizes[1]


def device_label(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device
