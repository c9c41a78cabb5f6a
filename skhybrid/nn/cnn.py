"""The plain CNN classifier: backbone, global average pooling, dropout, linear head."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .backbones import WeightsLike
from .base import BackboneModel

__all__ = ["CNN"]


class CNN(BackboneModel):
    """Backbone + global average pooling + dropout + FC, producing logits.

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet18"
        Registry name (see :func:`~skhybrid.nn.available_backbones`) or a module.
    n_classes : int, default=2
        Number of output logits.
    weights : "imagenet", None or path, default=None
        Initial backbone weights (see :func:`~skhybrid.nn.build_backbone`).
    dropout : float, default=0.5
        Dropout probability before the linear head.
    tile_shape : (height, width), default=(224, 224)
        Expected input size; only used to measure a custom backbone's channels.

    Notes
    -----
    ``forward`` takes uint8 ``(B, h, w, 3)`` RGB batches and returns logits ``(B, k)``;
    softmax belongs to the loss and to ``predict_proba``.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        n_classes: int = 2,
        *,
        weights: WeightsLike = None,
        dropout: float = 0.5,
        tile_shape: tuple[int, int] = (224, 224),
    ) -> None:
        super().__init__(backbone, weights, tile_shape)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.backbone.out_channels, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Deprecated alias of :meth:`pooled_features` (removed in a future release)."""
        warnings.warn(
            "CNN.features is deprecated; use CNN.pooled_features.", FutureWarning, stacklevel=2
        )
        return self.pooled_features(images)

    def forward(self, images: torch.Tensor, cnn_pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, k)``; ``cnn_pooled`` (B, C) replaces the backbone pass when given."""
        features = self.pooled_features(images) if cnn_pooled is None else cnn_pooled
        return self.fc(self.dropout(features))
