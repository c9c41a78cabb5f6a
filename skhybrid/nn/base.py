"""Shared body of the classification modules: input normalisation, backbone, freezing."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import WeightsLike, build_backbone
from .normalize import ImageNormalizer, to_unit_float

__all__ = ["BackboneModel"]


class BackboneModel(nn.Module):
    """Base class: uint8 ``(B, h, w, 3)`` in, a CNN feature map out; freezable backbone.

    Parameters
    ----------
    backbone : str or nn.Module
        See :func:`~skhybrid.nn.build_backbone`.
    weights : "imagenet", None or path
        See :func:`~skhybrid.nn.build_backbone`.
    sample_shape : (height, width)
        Input size used to measure a custom backbone's channels.
    """

    def __init__(
        self,
        backbone: str | nn.Module,
        weights: WeightsLike,
        sample_shape: tuple[int, int],
    ) -> None:
        super().__init__()
        self.normalizer = ImageNormalizer()
        self.backbone = build_backbone(backbone, weights, sample_shape=tuple(sample_shape))
        self.backbone.to(memory_format=torch.channels_last)
        self.backbone_frozen = False

    def freeze_backbone(self, frozen: bool = True) -> BackboneModel:
        """Freeze (or unfreeze) the CNN: phase 1 of the paper's transfer learning.

        A frozen backbone has ``requires_grad=False`` on all its parameters, runs without
        autograd, and stays in eval mode even when ``train()`` is called on the model (as
        skorch does before every training step), so its BatchNorm running statistics and any
        dropout / stochastic depth inside it are fixed too.
        """
        self.backbone_frozen = bool(frozen)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> BackboneModel:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def cnn_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``([0, 1] RGB (B, 3, h, w), feature map (B, C, h', w'))`` of uint8 images."""
        x = to_unit_float(images)
        if self.backbone_frozen:
            with torch.no_grad():  # phase 1: no activations kept for a backward pass
                fmap = self.backbone(self.normalizer(x))
        else:
            fmap = self.backbone(self.normalizer(x))
        return x, fmap

    #: Whether ``forward(images, cnn_pooled=...)`` can take precomputed pooled CNN features
    #: (phase 1 caches them: a frozen backbone gives the same features every epoch).
    accepts_cached_features = True

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """Globally pooled backbone features ``(B, C)`` of uint8 images ``(B, h, w, 3)``."""
        return self.pool(self.cnn_features(images)[1])

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        """Global average pooling ``(B, C, h, w) -> (B, C)``."""
        return fmap.mean(dim=(2, 3))
