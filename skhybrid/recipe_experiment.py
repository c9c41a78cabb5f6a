"""A recipe of :mod:`skhybrid.recipes` trained and scored on held-out patients.

What ``skhybrid train`` runs with its default ``--recipe recommended`` (and, with ``--cv``,
:func:`run_recipe_cross_validation`): the images are split by
patient as :func:`skhybrid.workflow.run_experiment` splits them (the same
:func:`~skhybrid.splits.patient_split_indices`, the same default test share), the recipe is
fitted on the training patients (its threshold tuned on inner folds of those patients only,
:func:`~skhybrid.recipes.fit_recipe`), and the test patients are scored with the recipe's own
decisions (``predict``, which applies the threshold). The result is an
:class:`~skhybrid.workflow.ExperimentResult`, so the command line writes it with the one
writer every run uses.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .reporting import prediction_rows, utc_now

__all__ = [
    "decision_info",
    "predict_with_decisions",
    "run_recipe_cross_validation",
    "run_recipe_experiment",
]


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


def predict_with_decisions(model: Any, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fitted recipe's probabilities and its own decisions, its features computed once.

    ``predict_proba`` then ``predict`` on a Pipeline would describe every image twice (the
    colour/texture statistics are most of the cost); here the steps before the last
    transform ``X`` once and the last step gives both.

    Returns
    -------
    proba : ndarray of shape (n, k)
    decisions : ndarray of shape (n,)
        ``predict``'s labels (a :class:`~skhybrid.recipes.PatientThresholdClassifier`
        applies its tuned threshold).
    """
    last = model
    if hasattr(model, "steps"):
        X = model[:-1].transform(X) if len(model.steps) > 1 else X
        last = model.steps[-1][1]
    return last.predict_proba(X), last.predict(X)


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
        patient_split,
    )

    log = _logger(verbose)
    started, started_utc = time.perf_counter(), utc_now()
    y, _ = _as_named_labels(y)
    patients = np.asarray(patients)
    test_size = DEFAULT_TEST_SIZE["patient"] if test_size is None else test_size
    train, test = patient_split(
        y, patients, test_size=test_size, random_state=random_state, log=log
    )
    log(f"Fitting the {recipe} recipe on the training patients ...")
    with _quiet_small_folds():
        model = fit_recipe(clone(model), X[train], y[train], groups=patients[train])
    decision = decision_info(model)
    if decision is not None:
        log(
            f"Decision threshold P({decision['positive_class']}) >= {decision['threshold']:.3f}"
            f", tuned on {decision['inner_splits']} inner patient folds (balanced accuracy "
            f"there {decision['inner_balanced_accuracy']:.3f}, at 0.5: "
            f"{decision['inner_balanced_accuracy_at_0.5']:.3f})."
        )
    proba, pred = predict_with_decisions(model, X[test])
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


@contextlib.contextmanager
def _quiet_small_folds() -> Iterator[None]:
    """Without scikit-learn's warning that a class has fewer members than inner folds.

    The SVM's Platt scaling and the threshold's inner folds split each training set again;
    on a small folder (tens of images) scikit-learn says so once per fit, dozens of lines
    between the progress messages, about folds that still hold both classes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield


def _steps(model: Any) -> list[str]:
    """The recipe's steps as ``name: class`` (the report says what was fitted)."""
    steps = getattr(model, "steps", [("model", model)])
    return [f"{name}: {type(step).__name__}" for name, step in steps]


def run_recipe_cross_validation(
    X: Any,
    y: Any,
    patients: Any,
    *,
    model: Any,
    recipe: str = "recommended",
    n_splits: int = 5,
    n_repeats: int = 3,
    baseline: bool = False,
    n_resamples: int = 1000,
    random_state: Any = 0,
    verbose: int = 1,
    image_info: Mapping[str, Any] | None = None,
) -> Any:
    """Repeated patient-wise cross-validation of a whole-image recipe, then a final fit.

    The recipe's counterpart of :func:`skhybrid.workflow.run_cross_validation`: the folds of
    :class:`~skhybrid.model_selection.RepeatedStratifiedGroupKFold`, the metrics and
    patient-bootstrap intervals of :func:`skhybrid.evaluation.cross_validate_patients`
    (each fold's threshold tuned on inner folds of its own training patients; decisions by
    the recipe's ``predict``), optionally the colour/texture baseline on the same folds for
    the paired difference, and the recipe refitted on all images as the model to save.

    Parameters
    ----------
    X, y, patients, model, recipe, random_state, verbose, image_info
        As :func:`run_recipe_experiment`.
    n_splits, n_repeats : int
        Folds and repeats.
    baseline : bool, default=False
        Also fit the baseline (:func:`skhybrid.recipes.recommended_pipeline` with
        ``texture_model="logistic", threshold=False``: colour/texture statistics, a scaled
        balanced logistic regression, decisions at 0.5) on the same folds.
    n_resamples : int, default=1000
        Patient-bootstrap resamples.

    Returns
    -------
    CrossValidationResult
        ``model`` is the recipe fitted on all images; ``info["decision"]`` its threshold.
    """
    from sklearn.base import clone

    from .evaluation import cross_validate_patients
    from .model_selection import RepeatedStratifiedGroupKFold
    from .recipes import fit_recipe, recommended_pipeline
    from .workflow import (
        CrossValidationResult,
        _as_named_labels,
        _FixedSplits,
        _image_columns,
        _logger,
        check_patient_folds,
    )

    log = _logger(verbose)
    started, started_utc = time.perf_counter(), utc_now()
    y, _ = _as_named_labels(y)
    patients = np.asarray(patients)
    check_patient_folds(y, patients, n_splits)
    splitter = RepeatedStratifiedGroupKFold(
        n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
    )
    splits = list(splitter.split(np.zeros(len(y)), y, patients))
    reference = (
        recommended_pipeline(texture_model="logistic", threshold=False, random_state=random_state)
        if baseline
        else None
    )
    log(f"Cross-validating the {recipe} recipe: {n_repeats} x {n_splits} patient-wise folds ...")
    with _quiet_small_folds():
        cv = cross_validate_patients(
            model,
            X,
            y,
            patients,
            cv=_FixedSplits(splits),
            baseline=reference,
            n_resamples=n_resamples,
            random_state=random_state,
            verbose=verbose,
        )
    classes = np.unique(y)
    positive = list(classes).index(cv.pos_label)
    columns = _image_columns(len(y), patients, image_info)
    predictions = []
    for index, ((_, test), fold) in enumerate(zip(splits, cv.folds)):
        repeat = index // n_splits
        score = cv.oof_proba[repeat, test]
        proba = np.empty((len(test), 2))
        proba[:, positive], proba[:, 1 - positive] = score, 1 - score
        predictions += prediction_rows(
            classes,
            y[test],
            proba,
            y_pred=cv.oof_pred[repeat, test],
            columns={
                "repeat": np.full(len(test), fold["repeat"]),
                "fold": np.full(len(test), fold["fold"]),
                **{name: values[test] for name, values in columns.items()},
            },
        )
    predictions.sort(key=lambda row: (row["repeat"], row["image"]))
    log(f"Fitting the final model on all {len(y)} images ...")
    with _quiet_small_folds():
        final = fit_recipe(clone(model), X, y, groups=patients)
    result = CrossValidationResult(cv=cv, info={}, predictions=predictions, model=final)
    result.curves = {"image (out-of-fold, repeat 1)": (y, cv.oof_proba[0])}
    result.info = {
        "recipe": recipe,
        "model": _steps(final),
        "decision": decision_info(final),
        "baseline": None if reference is None else "colour/texture + scaled balanced LR, 0.5",
        "n_images": len(y),
        "n_patients": len(np.unique(patients)),
        "split_unit": "patient",
        "n_splits": int(n_splits),
        "n_repeats": int(n_repeats),
        "random_state": random_state,
        "refit": True,
        "started_utc": started_utc,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result
