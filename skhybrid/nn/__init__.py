"""Pure PyTorch building blocks: backbones, the hybrid CNN-LSTM, the plain CNN, fusion.

Nothing here depends on scikit-learn or skorch; the estimators in :mod:`skhybrid.estimators`
wrap these modules. Every model takes uint8 ``(B, h, w, 3)`` RGB batches and returns logits.
"""

from __future__ import annotations

from .backbones import Backbone, available_backbones, build_backbone, is_backbone_name
from .base import BackboneModel
from .cnn import CNN
from .fusion import FUSIONS, AttentionFusion, build_fusion
from .hybrid import RNN_INPUTS, HybridCNNLSTM
from .normalize import ImageNormalizer, to_unit_float
from .stain import STAIN_MAPS, hematoxylin_map, luminance_map
from .stain_augment import random_stain_jitter
from .weights import MissingWeightsError, cached_weights_path

__all__ = [
    "CNN",
    "FUSIONS",
    "RNN_INPUTS",
    "STAIN_MAPS",
    "AttentionFusion",
    "Backbone",
    "BackboneModel",
    "HybridCNNLSTM",
    "ImageNormalizer",
    "MissingWeightsError",
    "available_backbones",
    "build_backbone",
    "build_fusion",
    "cached_weights_path",
    "hematoxylin_map",
    "is_backbone_name",
    "luminance_map",
    "random_stain_jitter",
    "to_unit_float",
]
