"""Patient-wise evaluation with skhybrid's metrics and scorers.

Runs in a few seconds on simulated features (no images, no GPU):

1. ``cross_validate`` with ``GroupKFold`` over patients and ``skhybrid.metrics.SCORERS``
   (accuracy, sensitivity, specificity, precision, F1, ROC AUC), with
   ``'benign'/'malignant'`` string labels;
2. out-of-fold predictions turned into paper-style reports (image level and
   patient recognition rate) printed as a Markdown table;
3. ROC, precision-recall and confusion-matrix PNGs, drawn by scikit-learn's Display classes.

Usage::

    python examples/metrics_and_scorers.py [OUTPUT_DIR]

Without ``OUTPUT_DIR`` the figures go to a new temporary directory. Figures need
matplotlib (``pip install 'skhybrid[plots]'``); without it they are skipped.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, cross_val_predict, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhybrid.metrics import (
    SCORERS,
    binary_report,
    format_reports,
    patient_score,
    plot_confusion_matrix,
    plot_precision_recall_curve,
    plot_roc_curve,
)


def make_data(n_patients: int = 40, random_state: int = 0):
    """Image features with patient structure: all images of a patient share a label
    and a patient-specific offset, which is what makes random splits leak. Patients
    have different numbers of images, as in BreakHis."""
    rng = np.random.default_rng(random_state)
    counts = rng.integers(3, 20, size=n_patients)
    n = int(counts.sum())
    # make_classification only supplies correlated noise features; the label is ours.
    X, _ = make_classification(n_samples=n, n_features=8, n_informative=4, random_state=0)
    patients = np.repeat([f"patient-{i:02d}" for i in range(n_patients)], counts)
    patient_label = rng.permutation(np.arange(n_patients) % 2)  # balanced patients
    y01 = np.repeat(patient_label, counts)
    X[:, :4] += 1.0 * y01[:, None]  # class signal
    X += np.repeat(rng.normal(0, 0.8, (n_patients, X.shape[1])), counts, axis=0)
    y = np.where(y01 == 1, "malignant", "benign")
    return X, y, patients


def main(output_dir: Path) -> None:
    X, y, patients = make_data()
    cv = GroupKFold(n_splits=5)
    models = {
        "Logistic regression": make_pipeline(StandardScaler(), LogisticRegression()),
        "Random forest": RandomForestClassifier(n_estimators=100, random_state=0),
    }

    print("Patient-wise 5-fold cross-validation (mean ± std over folds)\n")
    for name, model in models.items():
        scores = cross_validate(model, X, y, groups=patients, cv=cv, scoring=SCORERS)
        summary = ", ".join(
            f"{metric} {scores[f'test_{metric}'].mean():.3f}±{scores[f'test_{metric}'].std():.3f}"
            for metric in SCORERS
        )
        print(f"{name}: {summary}")

    # For contrast: a random split of images puts the same patient on both sides and
    # scores higher, but that estimate is leaky (see docs/metrics.md).
    leaky = cross_validate(
        models["Random forest"], X, y, cv=KFold(5, shuffle=True, random_state=0), scoring=SCORERS
    )
    print(f"Random forest, random image split (leaky!): roc_auc {leaky['test_roc_auc'].mean():.3f}")

    # Out-of-fold predictions give one prediction per image, so a single report and
    # curve per model (pooled over folds).
    reports, oof_scores = {}, {}
    for name, model in models.items():
        proba = cross_val_predict(model, X, y, groups=patients, cv=cv, method="predict_proba")
        classes = np.unique(y)  # predict_proba columns follow the sorted classes
        y_pred = classes[proba.argmax(axis=1)]
        reports[name] = binary_report(y, y_pred, proba, classes=classes)
        oof_scores[name] = proba[:, list(classes).index("malignant")]
        rate = patient_score(y, y_pred, patients)
        print(f"\n{name}: patient recognition rate {rate:.3f}")
        print(reports[name])

    print("\nImage-level results, out-of-fold (paper-style table)\n")
    print(format_reports(reports, counts=True))

    try:
        # The plots return scikit-learn's displays (a dict of them for a dict of curves),
        # holding the computed curves; .figure_ is the figure they were drawn on.
        rocs = plot_roc_curve(y, oof_scores, output_dir / "roc.png", title="ROC, patient-wise CV")
        prs = plot_precision_recall_curve(y, oof_scores, output_dir / "precision_recall.png")
        best = max(reports, key=lambda name: reports[name].auc)
        y_best = np.where(oof_scores[best] >= 0.5, "malignant", "benign")
        plot_confusion_matrix(y, y_best, output_dir / "confusion_matrix.png", title=best)
    except ImportError as exc:
        print(f"Figures skipped: {exc}")
    else:
        for name in oof_scores:
            print(
                f"{name}: ROC AUC {rocs[name].roc_auc:.3f}, average precision "
                f"{prs[name].average_precision:.3f} (chance {prs[name].prevalence_pos_label:.2f})"
            )
        print(f"Figures written to {output_dir}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
        out.mkdir(parents=True, exist_ok=True)
    else:
        out = Path(tempfile.mkdtemp(prefix="skhybrid-metrics-"))
    main(out)
