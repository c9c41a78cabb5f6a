"""The BreakHis patient recognition rate."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import column_or_1d

from ._base import _as_labels, _check_same_length


def patient_score(y_true: Any, y_pred: Any, patients: Any) -> float:
    """BreakHis patient recognition rate (Spanhol et al., 2016).

    For each patient, the fraction of their images that are classified correctly;
    then the mean over patients. Unlike accuracy, every patient weighs the same
    regardless of how many images they have. Works for any number of classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    patients : array-like of shape (n_samples,)
        Patient (or slide) id of each sample, e.g. ``load_breakhis(...).patient``.

    Returns
    -------
    float
        Mean per-patient accuracy in [0, 1].

    Examples
    --------
    >>> round(patient_score([1, 1, 1, 0], [1, 1, 0, 0], patients=["a", "a", "a", "b"]), 3)
    0.833
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    patients = column_or_1d(np.asarray(patients), warn=False)
    _check_same_length(y_true=y_true, y_pred=y_pred, patients=patients)
    # A missing id (NaN, as pandas reads an empty cell) would silently pool those images
    # into one made-up patient.
    if patients.dtype.kind == "f" and not np.all(np.isfinite(patients)):
        raise ValueError(
            "patients contains NaN or infinity; every image needs a patient (or slide) id."
        )
    _, patient_idx = np.unique(patients, return_inverse=True)
    correct = np.bincount(patient_idx, weights=(y_true == y_pred).astype(float))
    n_images = np.bincount(patient_idx)
    return float(np.mean(correct / n_images))
