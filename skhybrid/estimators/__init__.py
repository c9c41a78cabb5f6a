"""scikit-learn estimators over the PyTorch models of :mod:`skhybrid.nn`.

- :class:`HybridCNNLSTMClassifier`: the paper's hybrid CNN-LSTM with attention fusion.
- :class:`CNNClassifier`: the CNN-only baseline, trained the same way.
- :class:`CNNFeatureExtractor`: frozen CNN features for any scikit-learn classifier.

The classifiers are skorch ``NeuralNetClassifier`` subclasses with two-phase transfer
learning (CNN frozen, then fine-tuned), best-epoch restore, group-aware validation and
bag-level prediction. :class:`TrainingCheckpoint` and :func:`resume_fit` make a long fit
survive interruptions.
"""

from __future__ import annotations

from ._aggregate import AGGREGATIONS, aggregate_proba
from ._base import TileNetClassifier
from ._checkpoint import (
    TrainingCheckpoint,
    fit_resumable,
    load_checkpoint,
    load_self_learning_state,
    resume_fit,
    save_self_learning_state,
)
from ._classifiers import CNNClassifier, HybridCNNLSTMClassifier
from ._features import CNNFeatureExtractor

__all__ = [
    "AGGREGATIONS",
    "CNNClassifier",
    "CNNFeatureExtractor",
    "HybridCNNLSTMClassifier",
    "TileNetClassifier",
    "TrainingCheckpoint",
    "aggregate_proba",
    "fit_resumable",
    "load_checkpoint",
    "load_self_learning_state",
    "resume_fit",
    "save_self_learning_state",
]
