"""Rates, scores and the paper-style report of a binary benign-vs-malignant problem.

Every number comes from :mod:`sklearn.metrics`: the confusion counts from
:func:`~sklearn.metrics.confusion_matrix` with ``labels=[negative, positive]``, sensitivity
and specificity from :func:`~sklearn.metrics.recall_score` of the positive and of the negative
class, precision and F1 from :func:`~sklearn.metrics.precision_score` and
:func:`~sklearn.metrics.f1_score`, so scikit-learn's ``zero_division`` rules and warnings apply
unchanged. What this module adds is the class roles (which class is malignant, from
:mod:`skhybrid.class_roles`) and the layout of the paper's Tables 5-8.

The binary report is built from one :class:`_BinaryTable`; a k-class report (BreakHis
subtypes) belongs beside :func:`binary_report`, built the same way from per-class rates
(``precision_recall_fscore_support(..., labels=classes, average=None)``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._base import ZERO_DIVISION, _auc, _check_binary_targets, _positive_scores

_REPORT_COLUMNS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
_REPORT_HEADERS = ("Accuracy", "Sensitivity", "Specificity", "Precision", "F1", "AUC")
_COUNT_COLUMNS = ("tp", "fp", "fn", "tn", "n")
_RATE_NAMES = ("sensitivity", "specificity", "precision", "f1")

# The labels are encoded as "is positive" (False = negative, True = positive) before they
# reach scikit-learn: every label other than the positive one is negative, and a fold
# without any negative sample still has a negative class to name (False).
_NEGATIVE, _POSITIVE = False, True

#: Each rate as a scikit-learn call on the encoded labels.
_RATES: dict[str, Callable[..., float]] = {
    "sensitivity": lambda t, p, zd: recall_score(t, p, pos_label=_POSITIVE, zero_division=zd),
    "specificity": lambda t, p, zd: recall_score(t, p, pos_label=_NEGATIVE, zero_division=zd),
    "precision": lambda t, p, zd: precision_score(t, p, pos_label=_POSITIVE, zero_division=zd),
    "f1": lambda t, p, zd: f1_score(t, p, pos_label=_POSITIVE, zero_division=zd),
}

_LABEL_PARAMS = {"y_true": ["array-like"], "y_pred": ["array-like"], "pos_label": "no_validation"}


@dataclass(frozen=True)
class _BinaryTable:
    """The checked labels of a binary problem, their positive class and their counts.

    The one table that the scores, :func:`binary_report` and the scorers read.
    """

    y_true: np.ndarray
    y_pred: np.ndarray
    pos_label: Any
    tn: int
    fp: int
    fn: int
    tp: int

    @property
    def is_positive(self) -> tuple[np.ndarray, np.ndarray]:
        """``y_true`` and ``y_pred`` encoded as "is positive"."""
        return self.y_true == self.pos_label, self.y_pred == self.pos_label

    def rate(self, name: str, zero_division: Any) -> float:
        """Sensitivity, specificity, precision or F1, by scikit-learn."""
        return float(_RATES[name](*self.is_positive, zero_division))


def _binary_table(y_true: Any, y_pred: Any, pos_label: Any) -> _BinaryTable:
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    matrix = confusion_matrix(
        y_true == pos_label, y_pred == pos_label, labels=[_NEGATIVE, _POSITIVE]
    )
    tn, fp, fn, tp = (int(c) for c in matrix.ravel())
    return _BinaryTable(y_true, y_pred, pos_label, tn, fp, fn, tp)


# --------------------------------------------------------------------------- scores


@validate_params(_LABEL_PARAMS, prefer_skip_nested_validation=True)
def confusion_counts(
    y_true: Any, y_pred: Any, *, pos_label: Any = None
) -> tuple[int, int, int, int]:
    """Count true/false negatives and positives of a binary problem.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels (ints or strings such as ``'benign'``/``'malignant'``).
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    pos_label : int, str or None, default=None
        The positive (malignant) class. ``None`` infers it, see
        :func:`sensitivity_score`.

    Returns
    -------
    tn, fp, fn, tp : int
        ``sklearn.metrics.confusion_matrix(..., labels=[negative, positive]).ravel()``.
        Every label that is not ``pos_label`` counts as negative.

    Examples
    --------
    >>> confusion_counts(["benign", "malignant", "malignant"],
    ...                  ["benign", "benign", "malignant"])
    (1, 0, 1, 1)
    """
    table = _binary_table(y_true, y_pred, pos_label)
    return table.tn, table.fp, table.fn, table.tp


@validate_params(
    {**_LABEL_PARAMS, "zero_division": ZERO_DIVISION}, prefer_skip_nested_validation=True
)
def sensitivity_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    """Sensitivity (true positive rate): the recall of the positive class.

    ``TP / (TP + FN)``: the fraction of malignant samples that are called malignant.
    Computed by ``sklearn.metrics.recall_score(y_true, y_pred, pos_label=pos_label)``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels (ints or strings such as ``'benign'``/``'malignant'``).
        At most two distinct labels in ``y_true`` and ``y_pred`` together.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    pos_label : int, str or None, default=None
        The positive class. ``None`` infers it with
        :func:`skhybrid.class_roles.positive_label`: a tumour-like name
        (``'malignant'``), the counterpart of a benign-like name, else the larger of two
        numbers; labels it cannot tell raise a ``ValueError`` asking for ``pos_label``.
    zero_division : {"warn", 0.0, 1.0, np.nan}, default="warn"
        Value returned when ``y_true`` has no positive sample, as in
        :func:`sklearn.metrics.recall_score` (``"warn"``: 0.0 and its
        ``UndefinedMetricWarning``).

    Returns
    -------
    float
        Sensitivity in [0, 1] (or ``zero_division``).

    Examples
    --------
    >>> round(sensitivity_score([0, 1, 1, 1], [0, 1, 0, 1]), 3)
    0.667
    """
    return _binary_table(y_true, y_pred, pos_label).rate("sensitivity", zero_division)


@validate_params(
    {**_LABEL_PARAMS, "zero_division": ZERO_DIVISION}, prefer_skip_nested_validation=True
)
def specificity_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    """Specificity (true negative rate): the recall of the negative class.

    ``TN / (TN + FP)``: the fraction of benign samples that are called benign, computed by
    :func:`sklearn.metrics.recall_score` with the negative class as its ``pos_label``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    pos_label : int, str or None, default=None
        The positive class; every other label is negative. ``None`` infers it as in
        :func:`sensitivity_score`.
    zero_division : {"warn", 0.0, 1.0, np.nan}, default="warn"
        Value returned when ``y_true`` has no negative sample, as in
        :func:`sklearn.metrics.recall_score` (``"warn"``: 0.0 and its
        ``UndefinedMetricWarning``).

    Returns
    -------
    float
        Specificity in [0, 1] (or ``zero_division``).

    Examples
    --------
    >>> specificity_score(["benign", "benign", "malignant"],
    ...                   ["benign", "malignant", "malignant"])
    0.5
    """
    return _binary_table(y_true, y_pred, pos_label).rate("specificity", zero_division)


def _precision_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    # Behind the "precision" scorer: sklearn's precision_score with the inferred pos_label.
    return _binary_table(y_true, y_pred, pos_label).rate("precision", zero_division)


def _f1_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    # Behind the "f1" scorer: sklearn's f1_score with the inferred pos_label.
    return _binary_table(y_true, y_pred, pos_label).rate("f1", zero_division)


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class BinaryReport:
    """Paper-style binary metrics (one row of the paper's Tables 5-8).

    Rates are fractions in [0, 1]; ``str(report)`` and :func:`format_reports` show
    them as percentages. Create with :func:`binary_report`.

    Attributes
    ----------
    accuracy, sensitivity, specificity, precision, f1 : float
        Usual definitions with the malignant class as positive.
    auc : float
        ROC AUC; ``nan`` when no score was given or ``y_true`` has a single class.
    tp, fp, fn, tn : int
        Confusion counts.
    n : int
        Number of samples.
    """

    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    auc: float
    tp: int
    fp: int
    fn: int
    tn: int
    n: int

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a plain ``dict`` (e.g. for ``pandas.DataFrame``)."""
        return asdict(self)

    def __str__(self) -> str:
        width = max(len(h) for h in _REPORT_HEADERS)
        cells = [_percent(getattr(self, c), 2) for c in _REPORT_COLUMNS]
        header = "  ".join(h.rjust(width) for h in _REPORT_HEADERS)
        values = "  ".join(c.rjust(width) for c in cells)
        counts = f"TP={self.tp}  FP={self.fp}  FN={self.fn}  TN={self.tn}  (n={self.n})"
        return f"{header}\n{values}\n{counts}"


def _percent(value: float, digits: int) -> str:
    if math.isnan(value):
        return "nan"
    return f"{100 * value:.{digits}f}%"


@validate_params(
    {**_LABEL_PARAMS, "y_score": ["array-like", None], "zero_division": ZERO_DIVISION},
    prefer_skip_nested_validation=True,
)
def binary_report(
    y_true: Any,
    y_pred: Any,
    y_score: Any = None,
    *,
    pos_label: Any = None,
    classes: Any = None,
    zero_division: Any = "warn",
) -> BinaryReport:
    """Compute the paper's metrics for a binary benign-vs-malignant problem.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    y_score : array-like of shape (n_samples,) or (n_samples, 2), default=None
        Scores for the ROC AUC: the probability (or any score that grows with it) of
        the positive class, or the output of ``predict_proba``. For a 2-D array the
        positive column is ``classes.index(pos_label)``; without ``classes`` the
        columns are taken to follow the sorted labels of ``y_true``, which is the
        ``classes_`` order of scikit-learn classifiers. ``None`` gives ``auc=nan``.
    pos_label : int, str or None, default=None
        The positive class; ``None`` infers it as in :func:`sensitivity_score`.
    classes : array-like of shape (2,), default=None
        Labels of the columns of a 2-D ``y_score``, typically ``estimator.classes_``.
    zero_division : {"warn", 0.0, 1.0, np.nan}, default="warn"
        Value for sensitivity, specificity, precision and F1 when undefined, as in
        scikit-learn's ``recall_score``, ``precision_score`` and ``f1_score``.

    Returns
    -------
    BinaryReport

    Examples
    --------
    >>> report = binary_report([0, 0, 1, 1], [0, 1, 1, 1], [0.1, 0.6, 0.7, 0.9])
    >>> report.sensitivity, report.specificity, report.auc
    (1.0, 0.5, 1.0)
    """
    table = _binary_table(y_true, y_pred, pos_label)
    if y_score is None:
        auc = math.nan
    else:
        score = _positive_scores(table.y_true, y_score, table.pos_label, classes)
        auc = _auc(table.y_true, score, table.pos_label)
    return BinaryReport(
        accuracy=float(accuracy_score(*table.is_positive)),
        **{name: table.rate(name, zero_division) for name in _RATE_NAMES},
        auc=auc,
        tp=table.tp,
        fp=table.fp,
        fn=table.fn,
        tn=table.tn,
        n=len(table.y_true),
    )


@validate_params(
    {
        "reports": [Mapping],
        "fmt": [StrOptions({"markdown", "csv"})],
        "digits": [Interval(Integral, 0, None, closed="left")],
        "counts": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def format_reports(
    reports: Mapping[str, BinaryReport],
    fmt: str = "markdown",
    *,
    digits: int = 2,
    counts: bool = False,
) -> str:
    """Format several reports as a table, one row per model (like Tables 5-8).

    Parameters
    ----------
    reports : mapping of str to BinaryReport
        Row name (model, magnification, level, ...) to report; rows keep this order.
    fmt : {"markdown", "csv"}, default="markdown"
        Output format. Both show rates as percentages rounded to ``digits``.
    digits : int, default=2
        Decimals of the percentages.
    counts : bool, default=False
        Also show the TP, FP, FN, TN and n columns.

    Returns
    -------
    str
        The table, ending with a newline.

    Examples
    --------
    >>> r = binary_report([0, 1, 1], [0, 1, 0])
    >>> print(format_reports({"CNN": r}, digits=1), end="")
    | Model | Accuracy (%) | Sensitivity (%) | Specificity (%) | Precision (%) | F1 (%) | AUC (%) |
    |---|---:|---:|---:|---:|---:|---:|
    | CNN | 66.7 | 50.0 | 100.0 | 100.0 | 66.7 | nan |
    """
    for name, report in reports.items():
        if not isinstance(report, BinaryReport):
            raise TypeError(f"reports[{name!r}] is a {type(report).__name__}, not a BinaryReport.")
    headers = ["Model", *(f"{h} (%)" for h in _REPORT_HEADERS)]
    if counts:
        headers += ["TP", "FP", "FN", "TN", "n"]
    rows = []
    for name, report in reports.items():
        row = [str(name)]
        for column in _REPORT_COLUMNS:
            value = getattr(report, column)
            row.append("nan" if math.isnan(value) else f"{100 * value:.{digits}f}")
        if counts:
            row += [str(getattr(report, c)) for c in _COUNT_COLUMNS]
        rows.append(row)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buffer.getvalue()
    lines = [
        "| " + " | ".join(headers) + " |",
        "|---|" + "---:|" * (len(headers) - 1),
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows),
    ]
    return "\n".join(lines) + "\n"
