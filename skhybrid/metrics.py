"""Binary metrics for benign-vs-malignant classification.

Sensitivity and specificity, a paper-style report (the rows of Tables 5-8 of the
hybrid CNN-LSTM paper), the BreakHis patient recognition rate, scorers for
:func:`sklearn.model_selection.cross_validate`, and ROC / precision-recall /
confusion-matrix plots.

The positive class is the malignant one. Every function takes ``pos_label``; when it
is ``None`` the positive class is inferred from the labels (see
:func:`sensitivity_score`).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, make_scorer, roc_auc_score
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from .class_roles import positive_label

__all__ = [
    "SCORERS",
    "BinaryReport",
    "binary_report",
    "confusion_counts",
    "format_reports",
    "get_scorers",
    "patient_score",
    "plot_confusion_matrix",
    "plot_precision_recall_curve",
    "plot_roc_curve",
    "sensitivity_score",
    "specificity_score",
]

#: Label treated as positive by default when labels are strings.
DEFAULT_POS_LABEL = "malignant"

_REPORT_COLUMNS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
_REPORT_HEADERS = ("Accuracy", "Sensitivity", "Specificity", "Precision", "F1", "AUC")
_COUNT_COLUMNS = ("tp", "fp", "fn", "tn", "n")


# --------------------------------------------------------------------------- validation


def _as_labels(y: Any, name: str) -> np.ndarray:
    y = column_or_1d(np.asarray(y), warn=False)
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample.")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinity; labels must be finite.")
    kind = type_of_target(y, input_name=name)
    if kind == "continuous":
        raise ValueError(
            f"{name} contains continuous values, not class labels. Pass predicted "
            "labels as y_pred and scores or probabilities as y_score."
        )
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"{name} must hold class labels; got target type {kind!r}.")
    return y


def _check_same_length(**arrays: Any) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise ValueError(f"Inputs have different lengths ({detail}).")


def _resolve_pos_label(labels: np.ndarray, pos_label: Any) -> Any:
    # One rule for the class roles of the whole library (skhybrid.class_roles).
    return positive_label(labels, pos_label)


def _check_binary_targets(
    y_true: Any, y_pred: Any, pos_label: Any
) -> tuple[np.ndarray, np.ndarray, Any]:
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    _check_same_length(y_true=y_true, y_pred=y_pred)
    labels = unique_labels(y_true, y_pred)
    return y_true, y_pred, _resolve_pos_label(labels, pos_label)


def _check_zero_division(zero_division: Any) -> None:
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return
    elif isinstance(zero_division, numbers.Real) and (
        zero_division in (0, 1) or math.isnan(zero_division)
    ):
        return
    raise ValueError(f"zero_division must be 'warn', 0.0, 1.0 or np.nan; got {zero_division!r}.")


def _divide(num: int, den: int, zero_division: Any, metric: str, reason: str) -> float:
    if den > 0:
        return num / den
    if zero_division == "warn":
        warnings.warn(
            f"{metric} is ill-defined and being set to 0.0 because {reason}. "
            "Use the `zero_division` parameter to control this behavior.",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return 0.0
    return float(zero_division)


# --------------------------------------------------------------------------- scores


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
        In the order of ``sklearn.metrics.confusion_matrix(...).ravel()``. Every
        label that is not ``pos_label`` counts as negative.

    Examples
    --------
    >>> confusion_counts(["benign", "malignant", "malignant"],
    ...                  ["benign", "benign", "malignant"])
    (1, 0, 1, 1)
    """
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    return _counts(y_true, y_pred, pos_label)


def _counts(y_true: np.ndarray, y_pred: np.ndarray, pos_label: Any) -> tuple[int, int, int, int]:
    true_pos = y_true == pos_label
    pred_pos = y_pred == pos_label
    tp = int(np.sum(true_pos & pred_pos))
    fp = int(np.sum(~true_pos & pred_pos))
    fn = int(np.sum(true_pos & ~pred_pos))
    tn = int(np.sum(~true_pos & ~pred_pos))
    return tn, fp, fn, tp


def sensitivity_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    """Sensitivity (true positive rate): the recall of the positive class.

    ``TP / (TP + FN)``: the fraction of malignant samples that are called malignant.
    Equal to ``sklearn.metrics.recall_score(y_true, y_pred, pos_label=pos_label)``.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels (ints or strings such as ``'benign'``/``'malignant'``).
        At most two distinct labels in ``y_true`` and ``y_pred`` together.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    pos_label : int, str or None, default=None
        The positive class. ``None`` means ``'malignant'`` when it is among the labels
        (or when ``'benign'`` is the only label), else ``1`` for numeric labels;
        other labels raise a ``ValueError`` asking for ``pos_label``.
    zero_division : {"warn", 0.0, 1.0, np.nan}, default="warn"
        Value returned when ``y_true`` has no positive sample. ``"warn"`` returns
        0.0 and emits an ``UndefinedMetricWarning``, as in scikit-learn.

    Returns
    -------
    float
        Sensitivity in [0, 1] (or ``zero_division``).

    Examples
    --------
    >>> round(sensitivity_score([0, 1, 1, 1], [0, 1, 0, 1]), 3)
    0.667
    """
    _check_zero_division(zero_division)
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    _, _, fn, tp = _counts(y_true, y_pred, pos_label)
    return _divide(
        tp, tp + fn, zero_division, "Sensitivity", f"y_true has no positive ({pos_label!r}) sample"
    )


def specificity_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    """Specificity (true negative rate): the recall of the negative class.

    ``TN / (TN + FP)``: the fraction of benign samples that are called benign.

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
        Value returned when ``y_true`` has no negative sample. ``"warn"`` returns
        0.0 and emits an ``UndefinedMetricWarning``.

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
    _check_zero_division(zero_division)
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    tn, fp, _, _ = _counts(y_true, y_pred, pos_label)
    return _divide(
        tn,
        tn + fp,
        zero_division,
        "Specificity",
        f"y_true has no negative (not {pos_label!r}) sample",
    )


def _precision_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    _check_zero_division(zero_division)
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    _, fp, _, tp = _counts(y_true, y_pred, pos_label)
    return _divide(tp, tp + fp, zero_division, "Precision", "no sample is predicted positive")


def _f1_score(
    y_true: Any, y_pred: Any, *, pos_label: Any = None, zero_division: Any = "warn"
) -> float:
    _check_zero_division(zero_division)
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    _, fp, fn, tp = _counts(y_true, y_pred, pos_label)
    # Same convention as sklearn >= 1.3: F1 is undefined only without any positive
    # in y_true or y_pred, otherwise 2TP / (2TP + FP + FN) (which may be 0).
    return _divide(
        2 * tp, 2 * tp + fp + fn, zero_division, "F-score", "y_true and y_pred have no positive"
    )


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


# --------------------------------------------------------------------------- scores input


def _positive_scores(
    y_true: np.ndarray, y_score: Any, pos_label: Any, classes: Any, name: str = "y_score"
) -> np.ndarray:
    """Return a 1-D score that grows with the positive class."""
    y_score = np.asarray(y_score)
    if y_score.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got dtype {y_score.dtype}.")
    if y_score.ndim == 2 and y_score.shape[1] == 1:
        y_score = y_score[:, 0]
    _check_same_length(y_true=y_true, **{name: y_score})
    if not np.all(np.isfinite(y_score)):
        raise ValueError(f"{name} contains NaN or infinity.")
    if y_score.ndim == 1:
        return y_score.astype(float)
    if y_score.ndim != 2 or y_score.shape[1] != 2:
        raise ValueError(
            f"{name} must be 1-D scores of the positive class or a (n_samples, 2) "
            f"predict_proba array; got shape {y_score.shape}."
        )
    if classes is None:
        present = np.unique(y_true)
        if len(present) < 2:
            # The column cannot be identified, but nothing needs it: AUC is undefined.
            return y_score[:, -1].astype(float)
        # scikit-learn classifiers order predict_proba columns by sorted classes_.
        classes = present
    classes = np.asarray(classes).tolist()
    if len(classes) != 2 or pos_label not in classes:
        raise ValueError(
            f"classes={classes!r} must list the two columns of {name} and contain "
            f"pos_label={pos_label!r}."
        )
    return y_score[:, classes.index(pos_label)].astype(float)


def _auc(y_true: np.ndarray, score: np.ndarray, pos_label: Any) -> float:
    # roc_auc_score warns and returns nan when y_true holds a single class.
    return float(roc_auc_score(y_true == pos_label, score))


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
        Value for sensitivity, specificity, precision and F1 when undefined.

    Returns
    -------
    BinaryReport

    Examples
    --------
    >>> report = binary_report([0, 0, 1, 1], [0, 1, 1, 1], [0.1, 0.6, 0.7, 0.9])
    >>> report.sensitivity, report.specificity, report.auc
    (1.0, 0.5, 1.0)
    """
    _check_zero_division(zero_division)
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    tn, fp, fn, tp = _counts(y_true, y_pred, pos_label)
    if y_score is None:
        auc = math.nan
    else:
        auc = _auc(y_true, _positive_scores(y_true, y_score, pos_label, classes), pos_label)
    n = tn + fp + fn + tp
    return BinaryReport(
        accuracy=(tp + tn) / n,
        sensitivity=_divide(
            tp, tp + fn, zero_division, "Sensitivity", "y_true has no positive sample"
        ),
        specificity=_divide(
            tn, tn + fp, zero_division, "Specificity", "y_true has no negative sample"
        ),
        precision=_divide(
            tp, tp + fp, zero_division, "Precision", "no sample is predicted positive"
        ),
        f1=_divide(
            2 * tp, 2 * tp + fp + fn, zero_division, "F-score", "y_true and y_pred have no positive"
        ),
        auc=auc,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        n=n,
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
    if fmt not in ("markdown", "csv"):
        raise ValueError(f"fmt must be 'markdown' or 'csv'; got {fmt!r}.")
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


# --------------------------------------------------------------------------- scorers


def _roc_auc_score(y_true: Any, y_score: Any, *, pos_label: Any = None) -> float:
    """ROC AUC behind the ``"roc_auc"`` scorer.

    With an explicit ``pos_label``, scikit-learn's scorer machinery already hands over
    the score of that class (positive column of ``predict_proba``, or a sign-flipped
    ``decision_function``). With ``pos_label=None`` it hands over the score of
    ``classes_[-1]``, the largest label, so the score is flipped when the inferred
    positive class is the smaller label (e.g. labels ``1``/``2``).
    """
    y_true = _as_labels(y_true, "y_true")
    labels = np.unique(y_true)
    if pos_label is None:
        pos_label = _resolve_pos_label(labels, None)
        flip = len(labels) == 2 and pos_label != labels[-1]
    else:
        pos_label = _resolve_pos_label(labels, pos_label)
        flip = False
    score = _positive_scores(y_true, y_score, pos_label, None)
    return _auc(y_true, -score if flip else score, pos_label)


def get_scorers(pos_label: Any = None, *, zero_division: Any = "warn") -> dict[str, Callable]:
    """Scorers for ``scoring=`` of ``cross_validate``, ``GridSearchCV``, ...

    Parameters
    ----------
    pos_label : int, str or None, default=None
        The positive class. ``None`` infers it in each fold as in
        :func:`sensitivity_score` (``'malignant'``, else ``1``), which covers
        ``'benign'/'malignant'`` and ``0/1`` labels; pass it for any other labels.
    zero_division : {"warn", 0.0, 1.0, np.nan}, default="warn"
        Value of sensitivity, specificity, precision and F1 when undefined in a fold.

    Returns
    -------
    dict
        Keys ``"accuracy"``, ``"sensitivity"``, ``"specificity"``, ``"precision"``,
        ``"f1"`` and ``"roc_auc"``, all made with :func:`sklearn.metrics.make_scorer`.
        The first five share one cached ``predict`` call per fold; ``"roc_auc"``
        uses ``decision_function`` if available, else ``predict_proba``, and takes
        the positive class's column via ``estimator.classes_`` (assumed sorted, as
        in every scikit-learn classifier, when ``pos_label=None``).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GroupKFold, cross_validate
    >>> cv = cross_validate(LogisticRegression(), X, y, groups=patients,
    ...                     cv=GroupKFold(3), scoring=get_scorers())  # doctest: +SKIP
    >>> cv["test_sensitivity"].mean()  # doctest: +SKIP
    """
    _check_zero_division(zero_division)
    kwargs = {"pos_label": pos_label, "zero_division": zero_division}
    return {
        "accuracy": make_scorer(accuracy_score),
        "sensitivity": make_scorer(sensitivity_score, **kwargs),
        "specificity": make_scorer(specificity_score, **kwargs),
        "precision": make_scorer(_precision_score, **kwargs),
        "f1": make_scorer(_f1_score, **kwargs),
        "roc_auc": make_scorer(
            _roc_auc_score,
            response_method=("decision_function", "predict_proba"),
            pos_label=pos_label,
        ),
    }


#: Default scorers (``get_scorers()``): malignant / 1 is the positive class.
SCORERS: dict[str, Callable] = get_scorers()


# --------------------------------------------------------------------------- plots


def _import_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, an optional dependency of skhybrid: "
            "pip install 'skhybrid[plots]'"
        ) from exc
    return Figure


def _new_axes(ax: Any) -> tuple[Any, Any]:
    if ax is not None:
        return ax.figure, ax
    # A bare Figure, not pyplot: no global state, no backend switch, and nothing
    # accumulates in pyplot's figure manager when plotting in a loop.
    fig = _import_figure()(figsize=(5.0, 4.5), layout="constrained")
    return fig, fig.add_subplot()


_CHANCE_GID = "skhybrid-chance"


def _has_chance_line(ax: Any) -> bool:
    # Several calls may share one axes (tile- and image-level curves); draw the
    # reference line once.
    return any(line.get_gid() == _CHANCE_GID for line in ax.lines)


def _save(fig: Any, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot save the figure to {str(path)!r}: directory {str(path.parent)!r} "
            "does not exist."
        )
    fig.savefig(path, dpi=100)


def _curves(
    y_true: Any, y_score: Any, pos_label: Any, classes: Any, label: str | None
) -> tuple[np.ndarray, Any, list[tuple[str | None, np.ndarray]]]:
    y_true = _as_labels(y_true, "y_true")
    labels = np.unique(y_true)
    pos_label = _resolve_pos_label(labels, pos_label)
    if len(labels) < 2:
        raise ValueError(
            f"y_true must contain both classes to draw a curve; got only {labels.tolist()!r}."
        )
    if isinstance(y_score, Mapping):
        if not y_score:
            raise ValueError("y_score is an empty dict; give at least one curve.")
        curves = [
            (name, _positive_scores(y_true, s, pos_label, classes, name=f"y_score[{name!r}]"))
            for name, s in y_score.items()
        ]
    else:
        curves = [(label, _positive_scores(y_true, y_score, pos_label, classes))]
    return y_true, pos_label, curves


def plot_roc_curve(
    y_true: Any,
    y_score: Any,
    path: str | os.PathLike | None = None,
    *,
    pos_label: Any = None,
    classes: Any = None,
    ax: Any = None,
    label: str | None = None,
    title: str | None = "ROC curve",
) -> Any:
    """Plot ROC curves (sensitivity vs 1 - specificity), optionally saved as PNG.

    Needs matplotlib (``pip install 'skhybrid[plots]'``). Uses a bare
    ``matplotlib.figure.Figure``, so pyplot's state and backend are left alone.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels; both classes must be present.
    y_score : array-like or dict of str to array-like
        Scores of the positive class, 1-D or ``(n_samples, 2)`` ``predict_proba``
        (see :func:`binary_report` for the column choice), or a dict mapping curve
        names to such arrays to draw several curves for the same ``y_true``. For
        curves on different samples (e.g. tiles vs images) call again with ``ax=``.
    path : str or path-like, default=None
        Where to save the figure (format from the suffix, PNG by default). Its
        directory must exist.
    pos_label : int, str or None, default=None
        The positive class; ``None`` infers it as in :func:`sensitivity_score`.
    classes : array-like of shape (2,), default=None
        Labels of the columns of 2-D scores, e.g. ``estimator.classes_``.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``.
    label : str, default=None
        Legend name of the curve when ``y_score`` is an array.
    title : str or None, default="ROC curve"
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    from sklearn.metrics import roc_curve

    y_true, pos_label, curves = _curves(y_true, y_score, pos_label, classes, label)
    fig, ax = _new_axes(ax)
    for name, score in curves:
        fpr, tpr, _ = roc_curve(y_true == pos_label, score)
        auc = _auc(y_true, score, pos_label)
        prefix = f"{name} " if name else ""
        ax.plot(fpr, tpr, label=f"{prefix}(AUC = {auc:.3f})")
    if not _has_chance_line(ax):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", lw=1, label="Chance", gid=_CHANCE_GID)
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity)",
        aspect="equal",
    )
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="lower right")
    _save(fig, path)
    return fig


def plot_precision_recall_curve(
    y_true: Any,
    y_score: Any,
    path: str | os.PathLike | None = None,
    *,
    pos_label: Any = None,
    classes: Any = None,
    ax: Any = None,
    label: str | None = None,
    title: str | None = "Precision-recall curve",
) -> Any:
    """Plot precision-recall curves of the positive class, optionally saved as PNG.

    Parameters are those of :func:`plot_roc_curve`. Each legend entry shows the
    average precision (AP); the dotted line is the prevalence of the positive
    class, the precision of a random classifier (drawn for the first curves on
    an axes only).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y_true, pos_label, curves = _curves(y_true, y_score, pos_label, classes, label)
    fig, ax = _new_axes(ax)
    positive = y_true == pos_label
    for name, score in curves:
        precision, recall, _ = precision_recall_curve(positive, score)
        ap = average_precision_score(positive, score)
        prefix = f"{name} " if name else ""
        ax.step(recall, precision, where="post", label=f"{prefix}(AP = {ap:.3f})")
    if not _has_chance_line(ax):
        prevalence = float(np.mean(positive))
        ax.axhline(prevalence, linestyle=":", color="grey", lw=1, label="Chance", gid=_CHANCE_GID)
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel="Recall (sensitivity)",
        ylabel="Precision",
    )
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="lower left")
    _save(fig, path)
    return fig


def plot_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike | None = None,
    *,
    pos_label: Any = None,
    normalize: str | None = None,
    ax: Any = None,
    title: str | None = "Confusion matrix",
    cmap: str = "Blues",
) -> Any:
    """Plot the 2x2 confusion matrix (negative class first), optionally saved as PNG.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Ground-truth and predicted labels.
    path : str or path-like, default=None
        Where to save the figure; its directory must exist.
    pos_label : int, str or None, default=None
        The positive class, shown in the second row and column.
    normalize : {"true", "pred", "all"} or None, default=None
        As in :func:`sklearn.metrics.confusion_matrix`: divide by row sums, column
        sums or the total; ``None`` shows counts.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new figure is created when ``None``.
    title : str or None, default="Confusion matrix"
        Axes title.
    cmap : str, default="Blues"
        Colormap name.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}.")
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    tn, fp, fn, tp = _counts(y_true, y_pred, pos_label)
    matrix = np.array([[tn, fp], [fn, tp]], dtype=float)
    if normalize is not None:
        axis = {"true": 1, "pred": 0, "all": None}[normalize]
        total = matrix.sum(axis=axis, keepdims=axis is not None)
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = np.nan_to_num(matrix / total)
    negatives = [label for label in unique_labels(y_true, y_pred).tolist() if label != pos_label]
    names = [str(negatives[0]) if negatives else f"not {pos_label}", str(pos_label)]

    fig, ax = _new_axes(ax)
    image = ax.imshow(matrix, cmap=cmap, vmin=0)
    fig.colorbar(image, ax=ax)
    threshold = (matrix.max() + matrix.min()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        colour = "white" if value > threshold else "black"
        ax.text(j, i, text, ha="center", va="center", color=colour)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=names,
        yticklabels=names,
        xlabel="Predicted label",
        ylabel="True label",
    )
    if title is not None:
        ax.set_title(title)
    _save(fig, path)
    return fig
