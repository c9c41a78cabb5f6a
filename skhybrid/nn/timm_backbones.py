"""timm models as backbones, with weights from local files only.

``build_backbone("timm:<name>", weights)`` accepts any name of ``timm.list_models()`` whose
features are a spatial map: the model is built with ``pretrained=False, num_classes=0,
global_pool=""`` (no classifier, no pooling), so its output is the map the heads pool.
``weights`` is ``None`` (random) or the path of a local checkpoint (for example a histopathology
encoder downloaded elsewhere); skhybrid never downloads timm weights, so ``"imagenet"`` is an error
that says to pass a file instead.

timm records the input normalisation each architecture's published weights expect
(``pretrained_cfg["mean"]``, ``["std"]``). skhybrid feeds every backbone ImageNet-standardised
batches, so :class:`TimmFeatures` converts them to the model's own normalisation with one
per-channel affine (nothing at all when the model expects ImageNet's, as most do).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from .normalize import IMAGENET_MEAN, IMAGENET_STD
from .weights import MissingWeightsError

__all__ = ["TIMM_PREFIX", "TimmFeatures", "create_timm_features", "load_timm_weights"]

#: Backbone names starting with this are timm model names (``"timm:resnet10t"``).
TIMM_PREFIX = "timm:"
_WRAPPER_PREFIXES = ("module.", "model.")  # DataParallel / DDP, Lightning and similar wrappers
_MAX_LISTED_KEYS = 8


class TimmFeatures(nn.Module):
    """A timm model without classifier or pooling, fed ImageNet-standardised input.

    Parameters
    ----------
    model : nn.Module
        A timm model created with ``num_classes=0, global_pool=""``.
    mean, std : sequence of 3 floats
        The input normalisation the model's weights expect.

    Attributes
    ----------
    model : nn.Module
        The timm model (its state dict keys are timm's, under ``model.``).
    num_features : int
        Channels of the feature map.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.num_features = int(model.num_features)
        # x_model = (x * s_in + m_in - m) / s = x * (s_in / s) + (m_in - m) / s, with (m_in, s_in)
        # ImageNet's: undo skhybrid's standardisation and apply the model's, as one affine.
        m_in, s_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        m, s = torch.tensor(tuple(mean), dtype=torch.float32), torch.tensor(tuple(std))
        self.rescales = not (torch.allclose(m, m_in) and torch.allclose(s, s_in))
        # Not persistent: derived from timm's configuration, not learnt.
        self.register_buffer("_scale", (s_in / s).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", ((m_in - m) / s).view(1, 3, 1, 1), persistent=False)
        # Some timm families (Swin, MambaOut, ...) return NHWC maps; the heads want NCHW.
        self.channels_last_output = getattr(model, "output_fmt", "NCHW") == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rescales:
            x = torch.addcmul(self._shift, x, self._scale)
        out = self.model(x)
        if self.channels_last_output and out.ndim == 4:
            out = out.permute(0, 3, 1, 2)
        return out


def create_timm_features(name: str) -> TimmFeatures:
    """Build timm's ``name`` randomly initialised, without classifier or pooling.

    Raises
    ------
    ValueError
        When timm has no model of that name.
    """
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"timm has no model {name!r}; see timm.list_models() for the names "
            f"(e.g. backbone='{TIMM_PREFIX}resnet18')."
        )
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return TimmFeatures(model, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))


def imagenet_unavailable(name: str) -> MissingWeightsError:
    """The error for ``weights="imagenet"`` with a timm model: skhybrid does not download them."""
    return MissingWeightsError(
        f"weights='imagenet' is not available for backbone '{TIMM_PREFIX}{name}': skhybrid "
        "does not download timm weights. Download a checkpoint on a machine with network "
        "(e.g. timm.create_model(name, pretrained=True) and torch.save(model.state_dict(), "
        "path)), then pass weights='<path to the file>'; or weights=None to train from "
        "scratch. 'efficientnet_lite0' has ImageNet weights that work offline."
    )


def _strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Strip only a prefix every key has: a model may have a real submodule named "model".
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix) :]: value for key, value in state.items()}
                changed = True
    return state


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    return tuple(f"{head}." for head in heads)


def _listed(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"


def load_timm_weights(
    features: TimmFeatures,
    state: dict[str, torch.Tensor],
    *,
    source: str | os.PathLike[str] = "the checkpoint",
) -> None:
    """Load a checkpoint's state dict into ``features.model``, ignoring its classifier.

    ``"module."``/``"model."`` prefixes that every key carries are removed, and the keys of the
    classifier (timm's ``pretrained_cfg["classifier"]``, e.g. ``fc.`` or ``head.fc.``) dropped:
    a fine-tuned checkpoint with any number of classes, or none, gives its features.

    Raises
    ------
    ValueError
        When the keys or shapes do not fit, listing the missing and unexpected keys.
    """
    model = features.model
    heads = _head_prefixes(model)
    state = {k: v for k, v in _strip_wrapper_prefixes(state).items() if not k.startswith(heads)}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"The weights in {source} do not fit the backbone {type(model).__name__}: "
            f"{len(missing)} missing keys {_listed(missing)}, "
            f"{len(unexpected)} unexpected keys {_listed(unexpected)}, "
            f"{len(wrong_shape)} keys of another shape {_listed(wrong_shape)}. "
            "Is it a checkpoint of this architecture?"
        )
    model.load_state_dict(state, strict=True)
