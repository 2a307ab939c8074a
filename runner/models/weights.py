"""Finding pretrained weights without hanging, and loading local weights files.

Weights come from the Hugging Face cache, torch hub's cache, or a local file. When they are in
no cache and the host cannot be reached within a second, loading stops with a message naming
the model and both ways to provide weights; no library ever gets to retry a dead network.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from runner.errors import ModelError

if TYPE_CHECKING:  # this module is imported at plan time: torch stays out
    import torch
    from torch import nn

#: A module's parameters and buffers by name, as a weights file holds them.
StateDict = dict[str, "torch.Tensor"]
#: Converts a foreign checkpoint layout to the module's own (timm's ``checkpoint_filter_fn``).
Adapt = Callable[[StateDict, "nn.Module"], StateDict]

_reachable: dict[str, bool] = {}


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE or TRANSFORMERS_...)."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``url``'s host opens within ``timeout`` (cached per host)."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _reachable:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def cached_hub_file(repo_id: str, filenames: list[str]) -> Path | None:
    """The first of ``filenames`` in the local Hugging Face cache of ``repo_id``, if any."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def require_hub(model: str, repo_id: str, filenames: list[str]) -> Path | None:
    """The cached weights file of ``repo_id``; None if it must (and can) be downloaded.

    Raises ``ModelError`` at once when it is not cached and the hub is offline or unreachable.
    """
    found = cached_hub_file(repo_id, filenames)
    if found is not None:
        return found
    if hub_offline():
        raise missing_weights(model, f"Hugging Face repo {repo_id}", "HF_HUB_OFFLINE is set")
    if not reachable(hub_endpoint()):
        raise missing_weights(model, f"Hugging Face repo {repo_id}",
                              f"{urlparse(hub_endpoint()).hostname} cannot be reached")
    return None


def require_url(model: str, url: str, cache_dir: Path) -> Path | None:
    """The cached download of ``url`` under ``cache_dir``; None if it must (and can) be fetched."""
    target = cache_dir / os.path.basename(urlparse(url).path)
    if target.is_file():
        return target
    if hub_offline():
        raise missing_weights(model, url, "offline mode is set (HF_HUB_OFFLINE)")
    if not reachable(url):
        raise missing_weights(model, url, f"{urlparse(url).hostname} cannot be reached")
    return None


def missing_weights(model: str, where: str, why: str) -> ModelError:
    """The one-paragraph error for pretrained weights that cannot be had."""
    return ModelError(
        f"pretrained weights for model {model} are not available: they come from {where}, "
        f"which is not in the local cache, and {why}. Either put them in the cache on a machine "
        "with network access (load the model once there, then copy ~/.cache/huggingface or "
        "~/.cache/torch, or point HF_HOME / TORCH_HOME at a copy), or download the weights file "
        "and give it in the model entry as `weights: /path/to/file` (or use `pretrained: false` "
        "for a random-init model).", field="pretrained",
    )


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a weights file (.safetensors, or a torch pickle with or without a wrapper)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the file's fault
        raise ModelError(f"cannot read weights file {path}: {e}") from e
    for key in ("state_dict_ema", "model_ema", "state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(
    net: nn.Module,
    path: str | Path,
    model: str,
    adapt: Adapt | None = None,
) -> None:
    """Load a local weights file into ``net`` strictly; ``adapt`` may convert foreign layouts."""
    state = read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
        return
    except RuntimeError as first:
        if adapt is None:
            raise _mismatch(path, model, first) from first
        try:
            net.load_state_dict(adapt(state, net), strict=True)
        except Exception as e:  # noqa: BLE001 - report the original mismatch
            raise _mismatch(path, model, first) from e


def _mismatch(path: str | Path, model: str, error: Exception) -> ModelError:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    detail = " ".join(lines[1:3])[:600]
    return ModelError(
        f"weights file {path} does not fit model {model}: {detail} Check that the entry's "
        "architecture, `num_classes` and `kwargs` match the ones the file was trained with."
    )
