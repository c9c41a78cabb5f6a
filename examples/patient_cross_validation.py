"""Patient-wise cross-validation with the metrics scorers, and what a leaky split does.

Usage::

    python examples/patient_cross_validation.py [--quick]

Compares, on the same synthetic images, a cheap colour/texture baseline and the hybrid CNN-LSTM
under a patient-wise ``StratifiedGroupKFold``, and the baseline under a random ``KFold`` of images (leaky:
images of one patient on both sides). Every patient in ``make_histology`` has its own stain
shift, as real slides do, so the leaky protocol looks better than it is.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedGroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skhybrid import (
    SCORERS,
    ColorTextureFeatures,
    HybridCNNLSTMClassifier,
    SubImageTiler,
    make_histology,
)


def mean_over_tiles(features: np.ndarray) -> np.ndarray:
    """(n, T, d) per-tile features -> (n, d) image features."""
    return features.mean(axis=1)


def summarize(name: str, scores: dict) -> None:
    cells = [
        f"{metric} {scores[f'test_{metric}'].mean():.3f}"
        for metric in ("accuracy", "sensitivity", "specificity", "roc_auc")
    ]
    print(f"{name:<52} " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    data = make_histology(
        n_images=48 if args.quick else 96, image_size=(96, 144), difficulty=0.6, random_state=1
    )
    X, y, patients = data.images, data.target, data.patient
    tiler = SubImageTiler(grid=(3, 3), tile_size=(32, 32))
    baseline = Pipeline(
        [
            ("tiles", tiler),
            ("features", ColorTextureFeatures()),
            ("pool", FunctionTransformer(mean_over_tiles)),
            ("scale", StandardScaler()),
            ("logistic", LogisticRegression(max_iter=2000)),
        ]
    )
    hybrid = Pipeline(
        [
            ("tiles", tiler),
            (
                "clf",
                HybridCNNLSTMClassifier(
                    backbone="resnet18",
                    weights=None,
                    freeze_epochs=0,
                    max_epochs=2 if args.quick else 8,
                    lr=1e-3,
                    batch_size=32,
                    random_state=0,
                    verbose=0,
                ),
            ),
        ]
    )
    # Stratified by class as well as grouped by patient: with 8 patients, a plain GroupKFold
    # leaves test folds with patients of one class only, where ROC AUC is undefined (nan).
    patient_folds = StratifiedGroupKFold(n_splits=4)
    leaky_folds = KFold(n_splits=4, shuffle=True, random_state=0)
    print(f"{len(y)} images, {len(np.unique(patients))} patients\n")
    summarize(
        "baseline, patient-wise (StratifiedGroupKFold)",
        cross_validate(baseline, X, y, groups=patients, cv=patient_folds, scoring=SCORERS),
    )
    summarize(
        "baseline, random images (KFold, LEAKY)",
        cross_validate(baseline, X, y, cv=leaky_folds, scoring=SCORERS),
    )
    summarize(
        "hybrid CNN-LSTM, patient-wise (StratifiedGroupKFold)",
        cross_validate(hybrid, X, y, groups=patients, cv=patient_folds, scoring=SCORERS),
    )


if __name__ == "__main__":
    main()
