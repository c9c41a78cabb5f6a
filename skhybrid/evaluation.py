"""Publishable evaluation: repeated patient-wise cross-validation with patient-bootstrap intervals.

On BreakHis the images of one patient are strongly correlated (stain, scanner session, tissue),
so the unit of replication is the *patient*, not the image: the intervals here resample patients
with replacement, and the cross-validation never puts a patient on both sides of a split. With
82 patients (22 in the development sample) the fold-to-fold spread of ROC AUC is about +-0.10,
larger than most differences between models, so :func:`cross_validate_patients` repeats the
folds, pools the out-of-fold predictions and compares a model with a baseline *on the same folds
and the same resampled patients* (a paired difference). See ``docs/evaluation.md``.

No torch is imported here; the functions work with any scikit-learn classifier.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .class_roles import positive_label
from .metrics import binary_report, patient_score
from .model_selection import RepeatedStratifiedGroupKFold

__all__ = [
    "METRICS",
    "Interval",
    "PatientCVResult",
    "cross_validate_patients",
    "paper_convention_report",
    "patient_bootstrap_interval",
]

#: Metrics of :func:`cross_validate_patients`: the fields of ``binary_report`` (``auc`` is the
#: ROC AUC), balanced accuracy and the BreakHis patient recognition rate.
METRICS = (
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
    "balanced_accuracy",
    "patient_score",
)

#: Fraction of undefined bootstrap resamples above which a warning is raised: the interval then
#: describes only the resamples that hold both classes, which biases it.
MAX_SKIPPED_FRACTION = 0.05


# --------------------------------------------------------------------------- interval


@dataclass(frozen=True)
class Interval:
    """A point estimate with a (percentile bootstrap) confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on the full data.
    low, high : float
        Bounds of the interval (``nan`` when no resample was defined).
    n_skipped : int, default=0
        Bootstrap resamples where the statistic was undefined (e.g. one class only), left out.
    """

    estimate: float
    low: float
    high: float
    n_skipped: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, float | int | None]:
        """The fields as a JSON-able dict (``nan`` becomes ``None``)."""
        return {key: _json_number(value) for key, value in asdict(self).items()}


def _json_number(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}.")
    return float(confidence)


def _check_n_resamples(n_resamples: int) -> int:
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}.")
    return int(n_resamples)


def _patient_draws(n_patients: int, n_resamples: int, random_state: Any) -> np.ndarray:
    """Patient indices of each resample, shape ``(n_resamples, n_patients)``.

    Both :func:`patient_bootstrap_interval` and :func:`cross_validate_patients` draw with this
    function, so one seed gives them the same resampled patients.
    """
    rng = check_random_state(random_state)
    return rng.randint(n_patients, size=(n_resamples, n_patients))


def _interval(
    estimate: float, values: np.ndarray, confidence: float, what: str = "the statistic"
) -> Interval:
    """Percentile interval of the defined (finite) ``values``; warn when many are not."""
    values = np.asarray(values, dtype=float)
    defined = values[np.isfinite(values)]
    n_skipped = int(values.size - defined.size)
    # An undefined point estimate (e.g. precision of a model that never predicts positive)
    # is already visible as nan; warn only when the interval silently loses resamples.
    if math.isfinite(estimate) and n_skipped > MAX_SKIPPED_FRACTION * values.size:
        warnings.warn(
            f"{what} was undefined in {n_skipped} of {values.size} patient resamples (a class "
            "missing from the drawn patients, or never predicted); the interval uses the "
            "others and is less reliable. Use more patients.",
            UserWarning,
            stacklevel=3,
        )
    if defined.size == 0:
        return Interval(float(estimate), math.nan, math.nan, n_skipped)
    alpha = 1.0 - confidence
    low, high = np.quantile(defined, [alpha / 2, 1 - alpha / 2])
    return Interval(float(estimate), float(low), float(high), n_skipped)


def _accepts(function: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def patient_bootstrap_interval(
    metric: Callable[..., float],
    y_true: Any,
    y_pred_or_score: Any,
    groups: Any,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: Any = None,
) -> Interval:
    """Percentile bootstrap interval of a metric, resampling patients rather than images.

    Each resample draws as many patients as there are, with replacement, and takes *all* the
    images of every drawn patient (a patient drawn twice counts twice). Resampling images
    instead would treat correlated images of one patient as independent evidence and give
    intervals that are too narrow.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_pred_or_score) -> float``, e.g. ``sklearn.metrics.accuracy_score``
        or ``roc_auc_score``. When it has a ``groups`` or ``patients`` parameter (as
        :func:`~skhybrid.metrics.patient_score`), the resampled patient ids are passed there,
        each draw under its own id.
    y_true : array-like of shape (n_samples,)
        Ground-truth labels.
    y_pred_or_score : array-like of shape (n_samples,) or (n_samples, k)
        Predictions or scores, whatever ``metric`` takes.
    groups : array-like of shape (n_samples,)
        Patient id of each sample.
    n_resamples : int, default=1000
        Number of bootstrap resamples.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seed of the patient draws.

    Returns
    -------
    Interval
        ``estimate`` is the metric on all samples. Resamples where the metric raises
        ``ValueError`` or returns ``nan`` (e.g. a resample of one class only for ROC AUC) are
        skipped and counted in ``n_skipped``; above 5 % a ``UserWarning`` is raised.

    Examples
    --------
    >>> from sklearn.metrics import accuracy_score
    >>> y = [0, 0, 1, 1, 0, 1]
    >>> pred = [0, 1, 1, 1, 0, 0]
    >>> patients = ["a", "a", "b", "b", "c", "d"]
    >>> interval = patient_bootstrap_interval(accuracy_score, y, pred, patients,
    ...                                       n_resamples=200, random_state=0)
    >>> interval.low <= interval.estimate <= interval.high
    True
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    y_true = column_or_1d(np.asarray(y_true), warn=False)
    y_other = np.asarray(y_pred_or_score)
    groups = column_or_1d(np.asarray(groups), warn=False)
    check_consistent_length(y_true, y_other, groups)
    _, patient_idx = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(patient_idx == p) for p in range(patient_idx.max() + 1)]
    group_name = next((n for n in ("groups", "patients") if _accepts(metric, n)), None)

    def evaluate(index: np.ndarray, ids: np.ndarray) -> float:
        kwargs = {} if group_name is None else {group_name: ids}
        try:
            with warnings.catch_warnings():
                # One-class resamples: sklearn warns and returns nan; we count them instead.
                warnings.simplefilter("ignore")
                return float(metric(y_true[index], y_other[index], **kwargs))
        except ValueError:
            return math.nan

    estimate = evaluate(np.arange(len(y_true)), patient_idx)
    values = np.empty(n_resamples)
    for i, draw in enumerate(_patient_draws(len(members), n_resamples, random_state)):
        index = np.concatenate([members[p] for p in draw])
        # Draw j gets id j, so a patient drawn twice is two patients for patient_score.
        ids = np.repeat(np.arange(len(draw)), [len(members[p]) for p in draw])
        values[i] = evaluate(index, ids)
    name = getattr(metric, "__name__", "the metric")
    return _interval(estimate, values, confidence, what=name)


# --------------------------------------------------------------------------- paper convention


def paper_convention_report(
    y_true: Any,
    y_pred: Any,
    *,
    positive: Any = None,
    average: str = "weighted",
    digits: int | None = None,
) -> dict[str, float]:
    """Accuracy, and sensitivity, specificity, precision and F1 averaged over the two classes.

    The hybrid CNN-LSTM paper prints the same value for sensitivity and specificity in every
    row of its tables, which only an average over the two classes produces: the recall of
    class ``c`` is the sensitivity when ``c`` is called positive and the specificity when the
    other class is, so once averaged over both classes they coincide. ``sensitivity`` and
    ``specificity`` here are both the class-averaged recall; ``precision`` and ``f1`` the
    class-averaged precision and F1 (scikit-learn's ``precision_recall_fscore_support``).

    Which average? Table 8's ResNet101+LSTM 100X counts (benign positive: TP 1623, FP 4,
    FN 5, TN 2113) give per-class recalls 99.69 % (benign) and 99.81 % (malignant); Table 6
    prints 99.76 for sensitivity and specificity.

    - ``average="macro"`` (unweighted mean of the recalls, i.e. balanced accuracy):
      99.7515 %, printed 99.75, 0.01 below the paper (macro precision 99.76, macro F1 99.76).
    - ``average="weighted"`` (recalls weighted by class support, the "weighted avg" row of
      :func:`sklearn.metrics.classification_report`): 99.7597 %, printed 99.76, exactly the
      paper's figure; it equals the accuracy 3736 / 3745 by construction (weighted precision
      and F1 also print 99.76).

    Only the weighted average reproduces the printed row, so it is the default. Note what it
    implies: the paper's "sensitivity" and "specificity" are the accuracy, not the recalls of
    the malignant and benign classes (which :func:`~skhybrid.metrics.binary_report` gives,
    and which are returned here as ``sensitivity_positive`` and ``specificity_positive``).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Labels of a binary problem.
    positive : label, default=None
        The class the paper calls positive (benign in its Table 8); only
        ``sensitivity_positive`` and ``specificity_positive`` depend on it. ``None`` applies
        the class-role rule (:func:`skhybrid.class_roles.positive_label`: malignant, 1, ...).
    average : {"weighted", "macro"}, default="weighted"
        How the per-class values are averaged (see above).
    digits : int, default=None
        When given, values are percentages rounded to ``digits`` decimals, as printed.

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1`` (averaged), and
        ``sensitivity_positive``, ``specificity_positive`` (the recalls of ``positive`` and of
        the other class).

    Examples
    --------
    >>> y = ["benign"] * 1628 + ["malignant"] * 2117
    >>> pred = ["benign"] * 1623 + ["malignant"] * 5 + ["benign"] * 4 + ["malignant"] * 2113
    >>> report = paper_convention_report(y, pred, positive="benign", digits=2)
    >>> report["accuracy"], report["sensitivity"], report["specificity"]
    (99.76, 99.76, 99.76)
    >>> report["sensitivity_positive"], report["specificity_positive"]
    (99.69, 99.81)
    >>> paper_convention_report(y, pred, positive="benign", average="macro", digits=2)["sensitivity"]
    99.75
    """
    if average not in ("weighted", "macro"):
        raise ValueError(f"average must be 'weighted' or 'macro'; got {average!r}.")
    y_true = column_or_1d(np.asarray(y_true), warn=False)
    y_pred = column_or_1d(np.asarray(y_pred), warn=False)
    check_consistent_length(y_true, y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    if len(labels) != 2:
        raise ValueError(f"Expected two classes in y_true and y_pred; got {labels.tolist()!r}.")
    positive = positive_label(labels, positive)
    negative = next(label for label in labels.tolist() if label != positive)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[positive, negative], average=average, zero_division=np.nan
    )
    _, recalls, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[positive, negative], average=None, zero_division=np.nan
    )
    values = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "sensitivity": float(recall),
        "specificity": float(recall),
        "precision": float(precision),
        "f1": float(f1),
        "sensitivity_positive": float(recalls[0]),
        "specificity_positive": float(recalls[1]),
    }
    if digits is not None:
        values = {key: round(100 * value, digits) for key, value in values.items()}
    return values


# --------------------------------------------------------------------------- cross-validation


def _fit_params(estimator: Any, groups: np.ndarray) -> dict[str, np.ndarray]:
    """``groups`` for ``fit`` when the estimator (or a Pipeline's final step) takes it.

    skhybrid's classifiers take ``groups`` to make their internal validation split
    patient-wise; passing it to an estimator that does not name it would fail.
    """
    if hasattr(estimator, "steps"):
        name, final = estimator.steps[-1]
        if final not in (None, "passthrough") and _accepts(final.fit, "groups"):
            inner = _fit_params(final, groups)
            return {f"{name}__{key}": value for key, value in inner.items()}
        return {}
    return {"groups": groups} if _accepts(estimator.fit, "groups") else {}


def _positive_column(estimator: Any, X: Any, pos_label: Any) -> np.ndarray:
    """Out-of-fold score that grows with the positive class."""
    classes = list(np.asarray(estimator.classes_).tolist())
    if hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(X))
        if pos_label in classes:
            return proba[:, classes.index(pos_label)].astype(float)
        # The training folds held no positive sample: its probability is zero.
        return np.zeros(len(proba))
    score = np.asarray(estimator.decision_function(X), dtype=float)
    # decision_function grows with classes_[1]; flip when that is the negative class.
    return score if classes[-1] == pos_label else -score


def _repeat_of_each_fold(splits: list[tuple[np.ndarray, np.ndarray]], n: int) -> list[int]:
    """Repeat index of each fold: a new repeat starts when a test index comes back.

    Works for any splitter whose repeats each partition the samples, such as
    ``RepeatedStratifiedGroupKFold`` (``n_splits`` folds per repeat) or ``GroupKFold``.
    """
    repeats, seen, repeat = [], np.zeros(n, dtype=bool), 0
    for _, test in splits:
        if seen[test].any():
            if not seen.all():
                raise ValueError(
                    "cv must partition the samples in each repeat (every sample in exactly one "
                    "test fold per repeat); a sample came back before all were tested."
                )
            repeat, seen = repeat + 1, np.zeros(n, dtype=bool)
        seen[test] = True
        repeats.append(repeat)
    if not seen.all():
        raise ValueError(
            f"cv left {int((~seen).sum())} sample(s) out of every test fold of the last repeat; "
            "cross_validate_patients needs one out-of-fold prediction per sample and repeat."
        )
    return repeats


def _run_folds(
    estimator: Any,
    X: Any,
    y: np.ndarray,
    groups: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    repeats: list[int],
    pos_label: Any,
    progress: Any,
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    n_repeats = max(repeats) + 1
    oof_score = np.full((n_repeats, len(y)), np.nan)
    oof_pred = np.empty((n_repeats, len(y)), dtype=y.dtype)
    folds = []
    for fold, ((train, test), repeat) in enumerate(zip(splits, repeats)):
        model = clone(estimator)
        model.fit(_safe_indexing(X, train), y[train], **_fit_params(model, groups[train]))
        X_test = _safe_indexing(X, test)
        pred = np.asarray(model.predict(X_test))
        score = _positive_column(model, X_test, pos_label)
        oof_pred[repeat, test], oof_score[repeat, test] = pred, score
        report = binary_report(y[test], pred, score, pos_label=pos_label, zero_division=np.nan)
        folds.append(
            {
                "fold": fold,
                "repeat": repeat,
                "n_train": len(train),
                "n_test": len(test),
                "n_test_patients": len(np.unique(groups[test])),
                **report.to_dict(),
                "balanced_accuracy": (report.sensitivity + report.specificity) / 2,
                "patient_score": patient_score(y[test], pred, groups[test]),
            }
        )
        progress.update()
    return folds, oof_score, oof_pred


def _bootstrap_metrics(
    y: np.ndarray,
    oof_score: np.ndarray,
    oof_pred: np.ndarray,
    patient_idx: np.ndarray,
    counts: np.ndarray,
    pos_label: Any,
) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS`, per resample and repeat: arrays ``(n_weights, R)``.

    ``counts[i, p]`` is how often patient ``p`` is drawn in resample ``i``; a patient's images
    weigh that much. The confusion counts of a resample are then ``counts @ per-patient
    counts``, exact and fast, and ROC AUC uses the same multiplicities as sample weights
    (identical to duplicating the images).
    """
    n_patients = counts.shape[1]
    positive = y == pos_label
    result = {name: np.empty((len(counts), len(oof_pred))) for name in METRICS}
    for r, (score, pred) in enumerate(zip(oof_score, oof_pred)):
        said_positive = pred == pos_label

        def per_patient(mask: np.ndarray) -> np.ndarray:
            return np.bincount(patient_idx, weights=mask.astype(float), minlength=n_patients)

        tp = counts @ per_patient(positive & said_positive)
        fp = counts @ per_patient(~positive & said_positive)
        fn = counts @ per_patient(positive & ~said_positive)
        tn = counts @ per_patient(~positive & ~said_positive)
        accuracy_of_patient = per_patient(pred == y) / np.bincount(patient_idx)
        with np.errstate(divide="ignore", invalid="ignore"):
            sensitivity = tp / (tp + fn)
            specificity = tn / (tn + fp)
            result["accuracy"][:, r] = (tp + tn) / (tp + fp + fn + tn)
            result["sensitivity"][:, r] = sensitivity
            result["specificity"][:, r] = specificity
            result["precision"][:, r] = tp / (tp + fp)
            result["f1"][:, r] = 2 * tp / (2 * tp + fp + fn)
            result["balanced_accuracy"][:, r] = (sensitivity + specificity) / 2
            result["patient_score"][:, r] = counts @ accuracy_of_patient / counts.sum(axis=1)
        for i, weights in enumerate(counts):
            image_weight = weights[patient_idx]
            if image_weight[positive].any() and image_weight[~positive].any():
                result["auc"][i, r] = roc_auc_score(positive, score, sample_weight=image_weight)
            else:
                result["auc"][i, r] = math.nan
    return result


@dataclass
class PatientCVResult:
    """What :func:`cross_validate_patients` returns.

    Attributes
    ----------
    folds : list of dict
        One dict per fold: ``fold``, ``repeat``, ``n_train``, ``n_test``, ``n_test_patients``,
        the fields of :class:`~skhybrid.metrics.BinaryReport` (``auc`` is the ROC AUC),
        ``balanced_accuracy`` and ``patient_score``. ``pandas.DataFrame(result.folds)`` makes
        the table.
    oof_proba : ndarray of shape (n_repeats, n_samples)
        Out-of-fold score of the positive class (``predict_proba`` column, else
        ``decision_function``): every sample has exactly one per repeat.
    oof_pred : ndarray of shape (n_repeats, n_samples)
        Out-of-fold predicted labels.
    intervals : dict of str to Interval
        For every name of :data:`METRICS`: the mean over repeats of the metric on the pooled
        out-of-fold predictions, with its patient-bootstrap interval.
    pos_label : label
        The positive class.
    confidence : float
        Coverage of the intervals.
    n_resamples : int
        Bootstrap resamples.
    baseline_folds, baseline_oof_proba, baseline_oof_pred, baseline_intervals
        The same for the baseline, on the same folds (``None`` without a baseline).
    differences : dict of str to Interval or None
        Model minus baseline for every metric, with the paired patient-bootstrap interval.
    """

    folds: list[dict]
    oof_proba: np.ndarray
    oof_pred: np.ndarray
    intervals: dict[str, Interval]
    pos_label: Any
    confidence: float
    n_resamples: int
    baseline_folds: list[dict] | None = None
    baseline_oof_proba: np.ndarray | None = None
    baseline_oof_pred: np.ndarray | None = None
    baseline_intervals: dict[str, Interval] | None = None
    differences: dict[str, Interval] | None = None

    @property
    def n_repeats(self) -> int:
        """Number of repeats of the folds."""
        return int(self.oof_pred.shape[0])

    def fold_summary(self, baseline: bool = False) -> dict[str, tuple[float, float]]:
        """Mean and standard deviation over folds of every metric (``nan`` folds left out)."""
        folds = self.baseline_folds if baseline else self.folds
        if folds is None:
            raise ValueError("No baseline was evaluated.")
        summary = {}
        for name in METRICS:
            values = np.array([fold[name] for fold in folds], dtype=float)
            values = values[np.isfinite(values)]
            summary[name] = (
                (float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan)
                if values.size
                else (math.nan, math.nan)
            )
        return summary

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists and floats; ``nan`` as ``None``)."""

        def rows(folds: list[dict] | None) -> list[dict] | None:
            if folds is None:
                return None
            return [{k: _json_number(v) for k, v in fold.items()} for fold in folds]

        def intervals(values: Mapping[str, Interval] | None) -> dict | None:
            return None if values is None else {k: v.to_dict() for k, v in values.items()}

        def array(values: np.ndarray | None) -> list | None:
            if values is None:
                return None
            if values.dtype.kind == "f":
                return [[_json_number(v) for v in row] for row in values]
            return values.tolist()

        return {
            "pos_label": _json_number(self.pos_label),
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "n_repeats": self.n_repeats,
            "folds": rows(self.folds),
            "intervals": intervals(self.intervals),
            "oof_proba": array(self.oof_proba),
            "oof_pred": array(self.oof_pred),
            "baseline_folds": rows(self.baseline_folds),
            "baseline_intervals": intervals(self.baseline_intervals),
            "baseline_oof_proba": array(self.baseline_oof_proba),
            "baseline_oof_pred": array(self.baseline_oof_pred),
            "differences": intervals(self.differences),
        }

    def format(self, digits: int = 3) -> str:
        """A Markdown table: every metric as ``estimate [low, high]``, and the fold spread."""

        def cell(interval: Interval) -> str:
            return (
                f"{interval.estimate:.{digits}f} [{interval.low:.{digits}f}, "
                f"{interval.high:.{digits}f}]"
            )

        percent = round(100 * self.confidence)
        headers = ["Metric", f"Model ({percent} % CI)", "Model folds (mean ± sd)"]
        if self.differences is not None:
            headers += [f"Baseline ({percent} % CI)", f"Model - baseline ({percent} % CI)"]
        spread = self.fold_summary()
        lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
        for name in METRICS:
            mean, sd = spread[name]
            row = [name, cell(self.intervals[name]), f"{mean:.{digits}f} ± {sd:.{digits}f}"]
            if self.differences is not None:
                row += [cell(self.baseline_intervals[name]), cell(self.differences[name])]
            lines.append("| " + " | ".join(row) + " |")
        n_folds = len(self.folds)
        lines.append("")
        lines.append(
            f"{self.n_repeats} repeat(s), {n_folds} folds in all; intervals: {self.n_resamples} "
            "patient-bootstrap resamples of the pooled out-of-fold predictions, metric averaged "
            "over repeats in each resample."
        )
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.format()


def cross_validate_patients(
    estimator: Any,
    X: Any,
    y: Any,
    groups: Any,
    *,
    cv: Any = None,
    baseline: Any = None,
    pos_label: Any = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: Any = None,
    verbose: int = 1,
) -> PatientCVResult:
    """Repeated patient-wise cross-validation with patient-bootstrap intervals.

    Every fold fits a :func:`~sklearn.base.clone` of ``estimator`` (and of ``baseline``, on
    the same folds) on the training patients, passing ``groups`` to ``fit`` when the estimator
    or a Pipeline's final step takes it (skhybrid's classifiers do, to split their internal
    validation set by patient), and predicts the test patients.

    The intervals are computed on the *pooled* out-of-fold predictions: in each repeat every
    image has exactly one, made by a model that never saw its patient. A bootstrap resample
    draws patients with replacement; the metric is computed on each repeat's pooled
    predictions of the drawn patients and *averaged over the repeats* (repeats are not
    independent data, so they are not pooled as extra patients; averaging removes the noise of
    one particular fold assignment). The point estimate is the same average on all patients.
    With a baseline the same resampled patients serve both models, so the interval of the
    difference is paired: the patients' difficulty cancels out.

    Parameters
    ----------
    estimator : classifier
        A scikit-learn classifier (or Pipeline) with ``predict`` and ``predict_proba`` or
        ``decision_function``.
    X : array-like of shape (n_samples, ...)
        Images, bags or features.
    y : array-like of shape (n_samples,)
        Binary labels.
    groups : array-like of shape (n_samples,)
        Patient id of each sample.
    cv : splitter, default=None
        ``None`` means ``RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=3,
        random_state=0)``. Any splitter whose repeats each partition the samples works
        (``GroupKFold(5)`` is one repeat).
    baseline : classifier, default=None
        A reference model evaluated on the same folds, e.g. ``make_pipeline(
        ColorTextureFeatures(), StandardScaler(), LogisticRegression(class_weight="balanced",
        max_iter=1000))`` on images.
    pos_label : label, default=None
        The positive class; ``None`` applies the class-role rule (malignant, 1, ...).
    n_resamples : int, default=1000
        Bootstrap resamples of the patients.
    confidence : float, default=0.95
        Coverage of the intervals.
    random_state : int, RandomState instance or None, default=None
        Seed of the patient resampling (the folds are seeded by ``cv``). With the same seed,
        a single repeat's interval equals :func:`patient_bootstrap_interval`'s.
    verbose : int, default=1
        Show a tqdm progress bar over the fits when positive.

    Returns
    -------
    PatientCVResult
    """
    n_resamples = _check_n_resamples(n_resamples)
    confidence = _check_confidence(confidence)
    y = column_or_1d(np.asarray(y), warn=True)
    if groups is None:
        raise ValueError("cross_validate_patients needs groups= (the patient of each sample).")
    groups = column_or_1d(np.asarray(groups), warn=True)
    check_consistent_length(X, y, groups)
    pos_label = positive_label(np.unique(y), pos_label)
    if cv is None:
        cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=3, random_state=0)
    splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y, groups)]
    repeats = _repeat_of_each_fold(splits, len(y))

    from tqdm.auto import tqdm  # tqdm is a dependency of skhybrid; kept out of import time

    models = [("model", estimator)] + ([("baseline", baseline)] if baseline is not None else [])
    runs = {}
    with tqdm(total=len(splits) * len(models), disable=not verbose, desc="fits") as progress:
        for name, model in models:
            runs[name] = _run_folds(model, X, y, groups, splits, repeats, pos_label, progress)

    _, patient_idx = np.unique(groups, return_inverse=True)
    n_patients = patient_idx.max() + 1
    draws = _patient_draws(n_patients, n_resamples, random_state)
    counts = np.zeros((n_resamples + 1, n_patients))
    counts[0] = 1  # row 0: every patient once, the point estimate
    np.add.at(counts, (np.arange(1, n_resamples + 1)[:, None], draws), 1)
    per_repeat = {
        name: _bootstrap_metrics(y, score, pred, patient_idx, counts, pos_label)
        for name, (_, score, pred) in runs.items()
    }

    def summarise(values: Mapping[str, np.ndarray], label: str) -> dict[str, Interval]:
        out = {}
        for metric in METRICS:
            # nan in any repeat makes the resample undefined for this metric.
            mean = values[metric].mean(axis=1)
            out[metric] = _interval(mean[0], mean[1:], confidence, what=f"{label} {metric}")
        return out

    folds, oof_score, oof_pred = runs["model"]
    result = PatientCVResult(
        folds=folds,
        oof_proba=oof_score,
        oof_pred=oof_pred,
        intervals=summarise(per_repeat["model"], "model"),
        pos_label=pos_label,
        confidence=confidence,
        n_resamples=n_resamples,
    )
    if baseline is not None:
        result.baseline_folds, result.baseline_oof_proba, result.baseline_oof_pred = runs[
            "baseline"
        ]
        result.baseline_intervals = summarise(per_repeat["baseline"], "baseline")
        difference = {
            metric: per_repeat["model"][metric] - per_repeat["baseline"][metric]
            for metric in METRICS
        }
        result.differences = summarise(difference, "model - baseline")
    return result
