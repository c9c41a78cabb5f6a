"""skhybrid: hybrid CNN-LSTM histopathology classifiers for scikit-learn.

The public names are loaded on first use, so ``import skhybrid`` (and ``skhybrid --help``)
does not pay for importing torch until a model is needed.

>>> from skhybrid import SubImageTiler, HybridCNNLSTMClassifier  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> submodule that defines it
_EXPORTS = {
    # data
    "load_breakhis": "datasets",
    "make_histology": "datasets",
    # tiles and bags
    "SubImageTiler": "tiling",
    "flatten_bags": "tiling",
    "unflatten_tiles": "tiling",
    "broadcast_bag_labels": "tiling",
    # models
    "HybridCNNLSTMClassifier": "estimators",
    "CNNClassifier": "estimators",
    "CNNFeatureExtractor": "estimators",
    "ColorTextureFeatures": "features",
    "SelfLearningRelabeler": "self_learning",
    "StainNormalizer": "stain_normalization",
    # evaluation
    "binary_report": "metrics",
    "BinaryReport": "metrics",
    "format_reports": "metrics",
    "sensitivity_score": "metrics",
    "specificity_score": "metrics",
    "patient_score": "metrics",
    "get_scorers": "metrics",
    "SCORERS": "metrics",
    "patient_split_indices": "splits",
    "random_tile_split_indices": "splits",
    "run_experiment": "workflow",
    "RepeatedStratifiedGroupKFold": "model_selection",
    "cross_validate_patients": "evaluation",
    "patient_bootstrap_interval": "evaluation",
    "paper_convention_report": "evaluation",
    "Interval": "evaluation",
    "PatientCVResult": "evaluation",
    "resolve_class_roles": "class_roles",
    "recommended_pipeline": "recipes",
    "paper_pipeline": "recipes",
    "PatientThresholdClassifier": "recipes",
    "resolve_negative_classes": "class_roles",
    "multiclass_report": "metrics",
    "MulticlassReport": "metrics",
    "get_multiclass_scorers": "metrics",
    "TrainingCheckpoint": "estimators",
    "resume_fit": "estimators",
    "SkhybridError": "exceptions",
    "UserError": "exceptions",
    "DataError": "exceptions",
    "PathNotFoundError": "exceptions",
    # persistence
    "save_model": "model_io",
    "load_model": "model_io",
}

__all__ = [
    "SCORERS",
    "BinaryReport",
    "CNNClassifier",
    "CNNFeatureExtractor",
    "ColorTextureFeatures",
    "DataError",
    "HybridCNNLSTMClassifier",
    "Interval",
    "MulticlassReport",
    "PathNotFoundError",
    "PatientCVResult",
    "PatientThresholdClassifier",
    "RepeatedStratifiedGroupKFold",
    "SelfLearningRelabeler",
    "SkhybridError",
    "StainNormalizer",
    "SubImageTiler",
    "TrainingCheckpoint",
    "UserError",
    "binary_report",
    "broadcast_bag_labels",
    "cross_validate_patients",
    "flatten_bags",
    "format_reports",
    "get_multiclass_scorers",
    "get_scorers",
    "load_breakhis",
    "load_model",
    "make_histology",
    "multiclass_report",
    "paper_convention_report",
    "paper_pipeline",
    "patient_bootstrap_interval",
    "patient_score",
    "patient_split_indices",
    "random_tile_split_indices",
    "recommended_pipeline",
    "resolve_class_roles",
    "resolve_negative_classes",
    "resume_fit",
    "run_experiment",
    "save_model",
    "sensitivity_score",
    "specificity_score",
    "unflatten_tiles",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skhybrid' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .class_roles import resolve_class_roles, resolve_negative_classes
    from .datasets import load_breakhis, make_histology
    from .estimators import (
        CNNClassifier,
        CNNFeatureExtractor,
        HybridCNNLSTMClassifier,
        TrainingCheckpoint,
        resume_fit,
    )
    from .evaluation import (
        Interval,
        PatientCVResult,
        cross_validate_patients,
        paper_convention_report,
        patient_bootstrap_interval,
    )
    from .exceptions import DataError, PathNotFoundError, SkhybridError, UserError
    from .features import ColorTextureFeatures
    from .metrics import (
        SCORERS,
        BinaryReport,
        MulticlassReport,
        binary_report,
        format_reports,
        get_multiclass_scorers,
        get_scorers,
        multiclass_report,
        patient_score,
        sensitivity_score,
        specificity_score,
    )
    from .model_io import load_model, save_model
    from .model_selection import RepeatedStratifiedGroupKFold
    from .recipes import PatientThresholdClassifier, paper_pipeline, recommended_pipeline
    from .self_learning import SelfLearningRelabeler
    from .splits import patient_split_indices, random_tile_split_indices
    from .stain_normalization import StainNormalizer
    from .tiling import SubImageTiler, broadcast_bag_labels, flatten_bags, unflatten_tiles
    from .workflow import run_experiment
