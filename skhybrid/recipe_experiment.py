"""A recipe of :mod:`skhybrid.recipes` trained and scored on held-out patients.

What ``skhybrid train`` runs with its default ``--recipe recommended``: the images are split by
patient as :func:`skhybrid.workflow.run_experiment` splits them (the same
:func:`~skhybrid.splits.patient_split_indices`, the same default test share), the recipe is
fitted on the training patients (its threshold tuned on inner folds of those patients only,
:func:`~skhybrid.recipes.fit_recipe`), and the test patients are scored with the recipe's own
decisions (``predict``, which applies the threshold). The result is an
:class:`~skhybrid.workflow.ExperimentResult`, so the command line writes it with the one
writer every run uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .exceptions import DataError
from .reporting import prediction_rows, utc_now
from .splits import patient_split_indices

__all__ = ["decision_info", "run_recipe_experiment"]


def decision_info(model: Any) -> dict[str, Any] | None:
    """How a fitted recipe decides: its threshold, calibration and what they gained.

    Returns ``None`` for a model without a tuned threshold (``threshold=False``, the paper's
    recipe). The command line writes it as ``report.json``'s ``info.decision``.
    """
    from .recipes import PatientThresholdClassifier

    last = model.steps[-1][1] if hasattr(model, "steps") else model
    if not isinstance(last, PatientThresholdClassifier):
        return None
    return {
        "rule": "positive when its probability >= threshold (tuned on inner patient folds)",
        "positive_class": str(last.positive_class_),
        "threshold": round(float(last.threshold_), 6),
        "calibration": last.calibration,
        "inner_splits": int(last.n_splits),
        "inner_balanced_accuracy": round(float(last.inner_balanced_accuracy_), 6),
        "inner_balanced_accuracy_at_0.5": round(float(last.inner_balanced_accuracy_at_half_), 6),
    }


def run_recipe_experiment(
    X: Any,
    y: Any,
    patients: Any,
    *,
    model: Any,
    recipe: str = "recommended",
    test_size: float | None = None,
    random_state: Any = 0,
    verbose: int = 1,
    image_info: Mapping[str, Any] | None = None,
) -> Any:
    """Fit ``model`` (a whole-image recipe) on training patients, score the held-out ones.

    Parameters
    ----------
    X : uint8 array of shape (n, H, W, 3)
        Images.
    y : array-like of shape (n,)
        Two classes whose roles :mod:`skhybrid.class_roles` can tell.
    patients : array-like of shape (n,)
        Patient (slide) of each image.
    model : estimator
        Unfitted, e.g. :func:`skhybrid.recipes.recommended_pipeline`; cloned.
    recipe : str, default="recommended"
        Its name, for the report.
    test_size : float or None, default=None
        Share of each class's patients held out; ``None``: the patient protocol's
        (:data:`skhybrid.workflow.DEFAULT_TEST_SIZE`).
    random_state : int or None, default=0
        Seed of the split.
    verbose : int, default=1
    image_info : mapping of str to array-like, optional
        Per-image columns for ``predictions.csv``.

    Returns
    -------
    ExperimentResult
        ``model`` is the fitted recipe; ``info["decision"]`` its threshold
        (:func:`decision_info`).
    """
    from sklearn.base import clone

    from .recipes import fit_recipe
    from .workflow import (
        DEFAULT_TEST_SIZE,
        ExperimentResult,
        _as_named_labels,
        _image_columns,
        _logger,
        image_reports,
    )

    log = _logger(verbose)
    started, started_utc = time.perf_counter(), utc_now()
    y, _ = _as_named_labels(y)
    patients = np.asarray(patients)
    test_size = DEFAULT_TEST_SIZE["patient"] if test_size is None else test_size
    try:
        train, test = patient_split_indices(
            y, patients, test_size=test_size, random_state=random_state
        )
    except ValueError as exc:  # too few patients per class: the user's data, not a bug
        raise DataError(f"Cannot split these images patient-wise: {exc}") from exc
    log(
        f"Patient-wise split: {len(train)} training images ({len(np.unique(patients[train]))} "
        f"patients), {len(test)} test images ({len(np.unique(patients[test]))} patients)."
    )
    log(f"Fitting the {recipe} recipe on the training patients ...")
    model = fit_recipe(clone(model), X[train], y[train], groups=patients[train])
    decision = decision_info(model)
    if decision is not None:
        log(
            f"Decision threshold P({decision['positive_class']}) >= {decision['threshold']:.3f}"
            f", tuned on {decision['inner_splits']} inner patient folds (balanced accuracy "
            f"there {decision['inner_balanced_accuracy']:.3f}, at 0.5: "
            f"{decision['inner_balanced_accuracy_at_0.5']:.3f})."
        )
    proba, pred = model.predict_proba(X[test]), model.predict(X[test])
    reports, rate, curves = image_reports(model, y[test], proba, patients[test], image_pred=pred)
    columns = _image_columns(len(y), patients, image_info)
    predictions = prediction_rows(
        model.classes_,
        y[test],
        proba,
        y_pred=pred,
        columns={name: values[test] for name, values in columns.items()},
    )
    info = {
        "recipe": recipe,
        "model": _steps(model),
        "decision": decision,
        "n_images": len(y),
        "n_patients": len(np.unique(patients)),
        "n_train": len(train),
        "n_test": len(test),
        "split_unit": "image",
        "test_size": test_size,
        "random_state": random_state,
        "started_utc": started_utc,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return ExperimentResult(
        protocol="patient",
        reports=reports,
        patient_score=rate,
        history=[],
        history_table="",
        tile_label_accuracy={},
        model=model,
        curves=curves,
        info=info,
        predictions=predictions,
    )


def _steps(model: Any) -> list[str]:
    """The recipe's steps as ``name: class`` (the report says what was fitted)."""
    steps = getattr(model, "steps", [("model", model)])
    return [f"{name}: {type(step).__name__}" for name, step in steps]
