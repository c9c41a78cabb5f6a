"""The recommended recipe: fit it, read its tuned threshold, cross-validate it against the baseline.

Usage::

    python examples/recommended_recipe.py                      # synthetic images
    python examples/recommended_recipe.py --dev-npz ../shared/data/breakhis-200x-patches/dev.npz

``skhybrid.recipes.recommended_pipeline()`` is what ``skhybrid train`` fits by default: the
colour/texture statistics of each image, a soft vote of a balanced logistic regression and a
balanced RBF SVM, and a decision threshold tuned for balanced accuracy on inner patient-wise
folds of the training patients (``PatientThresholdClassifier``; ``predict`` applies it). The
script fits it once on every patient but a quarter and prints its threshold and held-out
balanced accuracy, then runs repeated patient-wise cross-validation against the plain
colour/texture logistic regression (threshold 0.5) on the same folds, with the paired
patient-bootstrap interval of the difference: on real tissue that interval decides whether
the threshold and the SVM are worth having (docs/results.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from skhybrid.datasets import make_histology
from skhybrid.evaluation import cross_validate_patients
from skhybrid.model_selection import RepeatedStratifiedGroupKFold
from skhybrid.recipes import fit_recipe, recommended_pipeline
from skhybrid.splits import patient_split_indices


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev-npz", type=Path, help="npz with images, target, patient_number")
    parser.add_argument("--n-images", type=int, default=120, help="synthetic images")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 4 folds")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if args.dev_npz is not None:
        data = np.load(args.dev_npz, allow_pickle=False)
        return data["images"], data["target"], data["patient_number"]
    data = make_histology(
        n_images=args.n_images, image_size=(96, 144), difficulty=0.6, random_state=0
    )
    return data.images, np.asarray(data.target_names)[data.target], data.patient


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    images, y, patients = load(args)
    print(f"{len(y)} images, {len(np.unique(patients))} patients")

    # One patient-wise split: the threshold is tuned on inner folds of the training patients.
    train, test = patient_split_indices(y, patients, test_size=0.25, random_state=0)
    model = fit_recipe(recommended_pipeline(), images[train], y[train], groups=patients[train])
    decider = model.named_steps["classifier"]
    held_out = balanced_accuracy_score(y[test], model.predict(images[test]))
    print(
        f"threshold P({decider.positive_class_}) >= {decider.threshold_:.3f} "
        f"(inner balanced accuracy {decider.inner_balanced_accuracy_:.3f}, at 0.5 "
        f"{decider.inner_balanced_accuracy_at_half_:.3f}); held-out balanced accuracy "
        f"{held_out:.3f}"
    )

    # Repeated patient-wise folds, the baseline on the same folds, paired intervals.
    baseline = recommended_pipeline(texture_model="logistic", threshold=False)
    result = cross_validate_patients(
        recommended_pipeline(),
        images,
        y,
        patients,
        cv=RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=args.repeats, random_state=0),
        baseline=baseline,
        n_resamples=args.resamples,
        random_state=0,
        verbose=0,
    )
    print(result.format())
    difference = result.differences["balanced_accuracy"]
    verdict = "excludes" if difference.low > 0 or difference.high < 0 else "holds"
    print(
        f"balanced accuracy, recipe - baseline: {difference.estimate:+.3f} "
        f"[{difference.low:+.3f}, {difference.high:+.3f}]: the interval {verdict} 0"
    )


if __name__ == "__main__":
    main()
