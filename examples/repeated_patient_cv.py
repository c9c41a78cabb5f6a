"""Repeated patient-wise cross-validation with patient-bootstrap intervals, and a paired comparison.

Usage::

    python examples/repeated_patient_cv.py                      # synthetic images
    python examples/repeated_patient_cv.py --dev-npz ../shared/data/breakhis-200x-patches/dev.npz

Two cheap models on the colour/texture features of ``skhybrid.features``: logistic regression on
all 22 features (the model) against the same logistic regression on the 10 colour and stain
features only (the baseline), on the same 3 x 4 patient-wise folds. It prints the per-fold
spread, every metric with its 95 % patient-bootstrap interval, and the paired difference
model - baseline with its interval: when that interval holds 0, these data cannot tell the two
models apart. ``--json PATH`` writes the full result (``PatientCVResult.to_dict()``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhybrid.datasets import make_histology
from skhybrid.evaluation import cross_validate_patients
from skhybrid.features import ColorTextureFeatures
from skhybrid.model_selection import RepeatedStratifiedGroupKFold

#: The first 10 features: RGB means and spreads, hematoxylin and eosin optical densities.
COLOUR_FEATURES = slice(0, 10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev-npz", type=Path, help="npz with images, target, patient_number")
    parser.add_argument("--n-images", type=int, default=120, help="synthetic images (default)")
    parser.add_argument("--n-patients", type=int, default=24, help="synthetic patients")
    parser.add_argument("--n-splits", type=int, default=4)
    parser.add_argument("--n-repeats", type=int, default=3)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if args.dev_npz is not None:
        data = np.load(args.dev_npz)
        # patient_number, not the slide id: two slides of one patient must stay together.
        return data["images"], data["target"], data["patient_number"], str(args.dev_npz)
    data = make_histology(
        args.n_images, image_size=(96, 144), n_patients=args.n_patients, n_jobs=1, random_state=0
    )
    target = data.target_names[data.target]
    return data.images, target, data.patient, "make_histology"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    images, y, groups, source = load(args)
    print(f"{source}: {len(y)} images, {len(np.unique(groups))} patients")
    # ColorTextureFeatures learns nothing in fit, so computing it once is exactly what
    # make_pipeline(ColorTextureFeatures(), ...) would compute in every fold, only faster.
    started = time.perf_counter()
    features = ColorTextureFeatures().fit_transform(images)
    print(f"colour/texture features: {features.shape} in {time.perf_counter() - started:.1f} s")

    def logistic() -> LogisticRegression:
        return LogisticRegression(class_weight="balanced", max_iter=1000)

    model = make_pipeline(StandardScaler(), logistic())
    baseline = make_pipeline(
        ColumnTransformer([("colour", "passthrough", COLOUR_FEATURES)]),
        StandardScaler(),
        logistic(),
    )
    cv = RepeatedStratifiedGroupKFold(args.n_splits, args.n_repeats, random_state=0)
    result = cross_validate_patients(
        model,
        features,
        y,
        groups,
        cv=cv,
        baseline=baseline,
        n_resamples=args.n_resamples,
        random_state=0,
        verbose=0,
    )
    aucs = [fold["auc"] for fold in result.folds]
    print(
        f"model: all 22 features; baseline: 10 colour/stain features; positive class "
        f"{result.pos_label!r}; {args.n_repeats} x {args.n_splits} patient-wise folds"
    )
    print(f"fold ROC AUC: min {np.nanmin(aucs):.3f}, max {np.nanmax(aucs):.3f}")
    print()
    print(result.format())
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=1))
        print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
