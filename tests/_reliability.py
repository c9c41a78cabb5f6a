"""Tiny data and estimators shared by the reliability test modules.

Everything here is sized for a 2-core CI machine: 16x16 tiles, ``mobilenet_v3_small`` or
``resnet18`` trained from scratch for one or two epochs, a few dozen tiles per fit. The models
learn next to nothing; the tests check behaviour (errors, determinism, persistence, memory),
not accuracy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Parameters that make a skorch estimator small, quiet, CPU-bound and seeded.
TINY_NET: dict[str, Any] = {
    "weights": None,
    "max_epochs": 2,
    "freeze_epochs": 0,
    "batch_size": 16,
    "lr": 1e-3,
    "verbose": 0,
    "device": "cpu",
    "random_state": 0,
}
#: Extra parameters of the hybrid model: a small LSTM reading a pooled 4x4 map.
TINY_HYBRID: dict[str, Any] = {"lstm_hidden_size": 8, "rnn_map_size": 4}


def tiny_cnn(backbone: str = "mobilenet_v3_small", **params: Any) -> Any:
    """A seeded ``CNNClassifier`` that fits in about a second on 64 tiles of 16x16."""
    from skhybrid import CNNClassifier

    return CNNClassifier(backbone, **{**TINY_NET, **params})


def tiny_hybrid(backbone: str = "mobilenet_v3_small", **params: Any) -> Any:
    """A seeded ``HybridCNNLSTMClassifier`` that fits in about a second on 64 tiles."""
    from skhybrid import HybridCNNLSTMClassifier

    return HybridCNNLSTMClassifier(backbone, **{**TINY_NET, **TINY_HYBRID, **params})


def tiny_extractor(backbone: str = "mobilenet_v3_small", **params: Any) -> Any:
    """A ``CNNFeatureExtractor`` with random (untrained) weights on the CPU."""
    from skhybrid import CNNFeatureExtractor

    return CNNFeatureExtractor(
        backbone, **{"weights": None, "device": "cpu", "batch_size": 64, **params}
    )


def feature_classifier() -> Any:
    """Colour/texture features + logistic regression: the relabeler's cheap tile model."""
    from skhybrid import ColorTextureFeatures

    return make_pipeline(
        ColorTextureFeatures(), StandardScaler(), LogisticRegression(class_weight="balanced")
    )


def tiny_relabeler(**params: Any) -> Any:
    """A seeded ``SelfLearningRelabeler`` over :func:`feature_classifier`."""
    from skhybrid import SelfLearningRelabeler

    params = {"n_rounds": 2, "cv": 3, "random_state": 0, **params}
    estimator = params.pop("estimator", None) or feature_classifier()
    return SelfLearningRelabeler(estimator, **params)


@functools.lru_cache(maxsize=4)
def _histology(n_images: int, seed: int) -> Any:
    from skhybrid import make_histology

    return make_histology(n_images, image_size=(32, 32), grid=(2, 2), n_jobs=1, random_state=seed)


def tiny_histology(n_images: int = 16, seed: int = 0) -> Any:
    """Synthetic 32x32 images on a 2x2 grid; fields are fresh copies on every call."""
    data = _histology(n_images, seed)
    return {key: np.array(value, copy=True) for key, value in data.items() if key != "DESCR"}


def tiny_bags(n_images: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bags (n, 4, 16, 16, 3) uint8, y (n,), patients (n,))`` from :func:`tiny_histology`."""
    from skhybrid import SubImageTiler

    data = tiny_histology(n_images, seed)
    bags = SubImageTiler(grid=(2, 2)).fit_transform(data["images"])
    return bags, data["target"], data["patient"]


def random_images(n: int = 8, size: int = 16, seed: int = 0) -> np.ndarray:
    """Random uint8 RGB images ``(n, size, size, 3)``."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
