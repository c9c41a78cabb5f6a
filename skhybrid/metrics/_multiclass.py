"""The k-class report (the eight BreakHis subtypes) and its scorers, on :mod:`sklearn.metrics`.

Every number is scikit-learn's: per-class precision, recall, F1 and support from
:func:`~sklearn.metrics.precision_recall_fscore_support` (``average=None`` for the classes,
``"macro"`` and ``"weighted"`` for the averages), :func:`~sklearn.metrics.accuracy_score`,
:func:`~sklearn.metrics.balanced_accuracy_score`, :func:`~sklearn.metrics.confusion_matrix` and
the one-vs-rest ROC AUC of :func:`~sklearn.metrics.roc_auc_score`. What this module adds is
what a cross-validation fold needs: a fixed list of classes (a fold may lack some), the AUC of a
class without positives (or without negatives) left out instead of an error, and a report that
prints and serialises.

With two classes :func:`~skhybrid.metrics.binary_report` (the paper's table) stays the report
of record; :func:`multiclass_report` works for any number of classes, two included.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    make_scorer,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.utils._param_validation import validate_params
from sklearn.utils.multiclass import unique_labels

from ._base import ZERO_DIVISION, _as_labels, _check_same_length
from ._patient import patient_score

_PER_CLASS = ("precision", "recall", "f1", "support", "auc")
_AVERAGES = ("macro", "weighted")


def _plain(value: Any) -> Any:
    # numpy scalars -> Python scalars, so that to_dict() goes through json.dumps.
    return value.item() if isinstance(value, np.generic) else value


def _json_float(value: float) -> float | None:
    # NaN (an undefined AUC) is not JSON; None is, and reads as "not defined".
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class MulticlassReport:
    """Metrics of a k-class problem (e.g. the eight BreakHis subtypes).

    Rates are fractions in [0, 1]; ``str(report)`` shows them as percentages. Create with
    :func:`multiclass_report`.

    Attributes
    ----------
    labels : tuple
        The classes, in the order of every per-class tuple and of the confusion matrix.
    target_names : tuple of str
        Display names of ``labels``.
    precision, recall, f1 : tuple of float
        Per class, by ``precision_recall_fscore_support(..., average=None)``; 0.0 for a class
        that is never predicted (precision) or absent (recall), as ``zero_division=0``.
    support : tuple of int
        True samples per class.
    auc : tuple of float
        One-vs-rest ROC AUC per class; ``nan`` without ``y_score`` or for a class with no
        positive (or no negative) sample in ``y_true``.
    macro, weighted : dict
        ``{"precision", "recall", "f1"}`` averaged unweighted and by support.
    accuracy, balanced_accuracy : float
        Overall accuracy; mean recall over the classes present in ``y_true``.
    macro_auc : float
        Mean one-vs-rest ROC AUC over the classes where it is defined (``nan`` if none); with
        every class present, ``roc_auc_score(y_true, y_score, multi_class="ovr")``.
    patient_score : float
        BreakHis patient recognition rate (:func:`~skhybrid.metrics.patient_score`); ``nan``
        without ``patients``.
    confusion_matrix : tuple of tuple of int
        ``confusion_matrix(y_true, y_pred, labels=labels)``: rows true, columns predicted.
    n : int
        Number of samples.
    """

    labels: tuple
    target_names: tuple
    precision: tuple
    recall: tuple
    f1: tuple
    support: tuple
    auc: tuple
    # Not hashed: a frozen report stays hashable although these two are dicts.
    macro: dict = field(repr=False, hash=False)
    weighted: dict = field(repr=False, hash=False)
    accuracy: float
    balanced_accuracy: float
    macro_auc: float
    patient_score: float
    confusion_matrix: tuple = field(repr=False)
    n: int

    @property
    def per_class(self) -> dict[str, dict[str, float | int]]:
        """``{target_name: {"precision", "recall", "f1", "support", "auc"}}``."""
        return {
            name: {key: getattr(self, key)[i] for key in _PER_CLASS}
            for i, name in enumerate(self.target_names)
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as plain, JSON-serialisable values (an undefined AUC becomes ``None``)."""
        per_class = {
            name: {
                key: (value if key == "support" else _json_float(value))
                for key, value in rates.items()
            }
            for name, rates in self.per_class.items()
        }
        return {
            "labels": [_plain(label) for label in self.labels],
            "target_names": list(self.target_names),
            "per_class": per_class,
            "macro": {k: _json_float(v) for k, v in self.macro.items()},
            "weighted": {k: _json_float(v) for k, v in self.weighted.items()},
            "accuracy": _json_float(self.accuracy),
            "balanced_accuracy": _json_float(self.balanced_accuracy),
            "macro_auc": _json_float(self.macro_auc),
            "patient_score": _json_float(self.patient_score),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "n": self.n,
        }

    def __str__(self) -> str:
        names = [*self.target_names, "macro avg", "weighted avg"]
        width = max(len(name) for name in names)
        header = f"{'':<{width}}  {'Precision':>9}  {'Recall':>7}  {'F1':>7}  {'Support':>7}"
        header += f"  {'AUC':>7}"
        lines = ["Rates in %", header]
        for i, name in enumerate(self.target_names):
            lines.append(
                f"{name:<{width}}  {_pct(self.precision[i]):>9}  {_pct(self.recall[i]):>7}  "
                f"{_pct(self.f1[i]):>7}  {self.support[i]:>7}  {_pct(self.auc[i]):>7}"
            )
        for name, rates, auc in (
            ("macro avg", self.macro, self.macro_auc),
            ("weighted avg", self.weighted, math.nan),
        ):
            auc_cell = _pct(auc) if name == "macro avg" else ""
            lines.append(
                f"{name:<{width}}  {_pct(rates['precision']):>9}  {_pct(rates['recall']):>7}  "
                f"{_pct(rates['f1']):>7}  {self.n:>7}  {auc_cell:>7}"
            )
        summary = (
            f"Accuracy {_pct(self.accuracy)}  Balanced accuracy {_pct(self.balanced_accuracy)}"
        )
        if not math.isnan(self.patient_score):
            summary += f"  Patient score {_pct(self.patient_score)}"
        lines += ["", summary, "", "Confusion matrix (rows: true, columns: predicted)"]
        index = [f"[{i}]" for i in range(len(self.labels))]
        cell = max(len(index[-1]), *(len(str(c)) for row in self.confusion_matrix for c in row))
        lines.append(" " * (width + 6) + " ".join(f"{i:>{cell}}" for i in index))
        for i, (name, row) in enumerate(zip(self.target_names, self.confusion_matrix)):
            cells = " ".join(f"{c:>{cell}}" for c in row)
            lines.append(f"{name:<{width}} {index[i]:>4} {cells}")
        return "\n".join(line.rstrip() for line in lines)


def _pct(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.2f}"


def _check_labels(labels: Any, present: np.ndarray) -> np.ndarray:
    if labels is None:
        # The classes_ order of scikit-learn classifiers.
        return present
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"labels must list at least two classes, got {labels.tolist()!r}.")
    if len(unique_labels(labels)) != len(labels):
        raise ValueError(f"labels has repeated classes: {labels.tolist()!r}.")
    missing = np.setdiff1d(present, labels)
    if len(missing):
        raise ValueError(
            f"y_true or y_pred hold {missing.tolist()!r}, which are not in "
            f"labels={labels.tolist()!r}."
        )
    return labels


def _check_scores(y_score: Any, n: int, labels: np.ndarray) -> np.ndarray:
    y_score = np.asarray(y_score)
    if y_score.dtype.kind not in "biuf":
        raise ValueError(f"y_score must be numeric; got dtype {y_score.dtype}.")
    if y_score.ndim != 2 or y_score.shape[1] != len(labels):
        raise ValueError(
            f"y_score must have shape (n_samples, {len(labels)}), one column per class of "
            f"labels={labels.tolist()!r} (e.g. predict_proba with labels=estimator.classes_); "
            f"got shape {y_score.shape}."
        )
    if y_score.shape[0] != n:
        raise ValueError(f"y_score has {y_score.shape[0]} rows for {n} samples.")
    if not np.all(np.isfinite(y_score)):
        raise ValueError("y_score contains NaN or infinity.")
    return y_score.astype(float)


def _ovr_auc(y_true: np.ndarray, y_score: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class; ``nan`` where a class has no positive or no negative.

    The AUC of a class is ``roc_auc_score(y_true == c, y_score[:, c])``, exactly what
    ``roc_auc_score(..., multi_class="ovr", average=None)`` computes per column, but without
    failing on a fold that lacks a class and without requiring rows that sum to 1.
    """
    auc = np.full(len(labels), np.nan)
    for j, label in enumerate(labels):
        is_class = y_true == label
        if is_class.any() and not is_class.all():
            auc[j] = roc_auc_score(is_class, y_score[:, j])
    return auc


def _mean_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "y_score": ["array-like", None],
        "labels": ["array-like", None],
        "target_names": ["array-like", None],
        "patients": ["array-like", None],
        "zero_division": ZERO_DIVISION,
    },
    prefer_skip_nested_validation=True,
)
def multiclass_report(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    *,
    labels: Any = None,
    target_names: Any = None,
    patients: Any = None,
    zero_division: Any = 0.0,
) -> MulticlassReport:
    """Compute per-class and averaged metrics of a k-class problem (e.g. BreakHis subtypes).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    y_score : array-like of shape (n_samples, n_classes), default=None
        Class scores for the one-vs-rest ROC AUC, columns in the order of ``labels`` (e.g.
        ``predict_proba`` with ``labels=estimator.classes_``). ``None`` gives ``nan`` AUCs.
    labels : array-like of shape (n_classes,), default=None
        The classes, in the order of the report's rows and of ``y_score``'s columns. ``None``
        uses the sorted labels of ``y_true`` and ``y_pred`` (the ``classes_`` order of
        scikit-learn classifiers); pass ``estimator.classes_`` when a fold may lack a class,
        so that every fold reports the same rows. Must include every label seen.
    target_names : array-like of str, default=None
        Display names of ``labels`` (e.g. ``load_breakhis(target="subtype").target_names``
        for the integer labels 0-7); ``None`` uses ``str(label)``.
    patients : array-like of shape (n_samples,), default=None
        Patient (or slide) id of each sample; adds the patient recognition rate.
    zero_division : {0.0, 1.0, np.nan, "warn"}, default=0.0
        Precision, recall and F1 of a class with nothing predicted (or nothing true), as in
        :func:`sklearn.metrics.precision_recall_fscore_support`. The default 0.0, silent, lets
        a fold that lacks a class be reported without warnings.

    Returns
    -------
    MulticlassReport

    Examples
    --------
    >>> report = multiclass_report([0, 1, 2, 2], [0, 2, 2, 2],
    ...                            target_names=["adenosis", "fibroadenoma", "ductal"])
    >>> report.recall, report.accuracy
    ((1.0, 0.0, 1.0), 0.75)
    >>> report.confusion_matrix
    ((1, 0, 0), (0, 0, 1), (0, 0, 2))
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    labels = _check_labels(labels, unique_labels(y_true, y_pred))
    if target_names is None:
        names = tuple(str(_plain(label)) for label in labels)
    else:
        names = tuple(str(name) for name in np.asarray(target_names).tolist())
        if len(names) != len(labels):
            raise ValueError(
                f"target_names has {len(names)} names for {len(labels)} labels {labels.tolist()!r}."
            )
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=zero_division
    )
    averages = {}
    for average in _AVERAGES:
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=zero_division
        )
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    if y_score is None:
        auc = np.full(len(labels), np.nan)
    else:
        auc = _ovr_auc(y_true, _check_scores(y_score, len(y_true), labels), labels)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    with warnings.catch_warnings():
        # A fold often lacks a subtype that the model still predicts: expected, not news.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y_true, y_pred))
    return MulticlassReport(
        labels=tuple(_plain(label) for label in labels),
        target_names=names,
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in support),
        auc=tuple(float(v) for v in auc),
        macro=averages["macro"],
        weighted=averages["weighted"],
        accuracy=float(accuracy_score(y_true, y_pred)),
        # Recall averaged over the classes present in y_true (scikit-learn's definition).
        balanced_accuracy=balanced,
        macro_auc=_mean_defined(auc),
        patient_score=math.nan if patients is None else patient_score(y_true, y_pred, patients),
        confusion_matrix=tuple(tuple(int(c) for c in row) for row in matrix),
        n=len(y_true),
    )


# --------------------------------------------------------------------------- scorers


def _roc_auc_ovr_scorer(estimator: Any, X: Any, y_true: Any) -> float:
    """Macro one-vs-rest ROC AUC over the classes of this fold that have positives and negatives.

    A ``(estimator, X, y)`` scorer: the columns of ``predict_proba`` are named by
    ``estimator.classes_``, so a test fold that lacks a class (where scikit-learn's
    ``"roc_auc_ovr"`` scorer fails) still gets the AUC of the others.
    """
    y_true = _as_labels(y_true, "y_true")
    labels = np.asarray(estimator.classes_)
    proba = np.asarray(estimator.predict_proba(X), dtype=float)
    return _mean_defined(_ovr_auc(y_true, proba, labels))


@validate_params({"zero_division": ZERO_DIVISION}, prefer_skip_nested_validation=True)
def get_multiclass_scorers(*, zero_division: Any = 0.0) -> dict[str, Callable]:
    """Scorers of a k-class problem for ``scoring=`` of ``cross_validate``, ``GridSearchCV``, ...

    Parameters
    ----------
    zero_division : {0.0, 1.0, np.nan, "warn"}, default=0.0
        F1 of a class absent from a fold's ``y_true`` and ``y_pred``, as in
        :func:`sklearn.metrics.f1_score`.

    Returns
    -------
    dict
        ``"accuracy"``, ``"balanced_accuracy"`` (:func:`~sklearn.metrics.make_scorer` of
        scikit-learn's functions, as its ``"accuracy"`` / ``"balanced_accuracy"`` scorers),
        ``"f1_macro"``, ``"f1_weighted"`` (``f1_score`` with ``average="macro"`` /
        ``"weighted"`` over the labels of the fold) and ``"roc_auc_ovr"``: the macro
        one-vs-rest ROC AUC of ``predict_proba``, over the classes present in the fold (the
        columns are named by ``estimator.classes_``).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import StratifiedGroupKFold, cross_validate
    >>> cv = cross_validate(LogisticRegression(), X, y_subtype, groups=patients,
    ...                     cv=StratifiedGroupKFold(3),
    ...                     scoring=get_multiclass_scorers())  # doctest: +SKIP
    >>> cv["test_balanced_accuracy"].mean()  # doctest: +SKIP
    """
    return {
        "accuracy": make_scorer(accuracy_score),
        "balanced_accuracy": make_scorer(balanced_accuracy_score),
        "f1_macro": make_scorer(f1_score, average="macro", zero_division=zero_division),
        "f1_weighted": make_scorer(f1_score, average="weighted", zero_division=zero_division),
        "roc_auc_ovr": _roc_auc_ovr_scorer,
    }
