"""Scorers for ``scoring=`` of ``cross_validate``, ``GridSearchCV``, ..."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, make_scorer
from sklearn.utils._param_validation import validate_params

from ._base import ZERO_DIVISION, _as_labels, _auc, _positive_scores, _resolve_pos_label
from ._classification import _f1_score, _precision_score, sensitivity_score, specificity_score


def _roc_auc_score(y_true: Any, y_score: Any, *, pos_label: Any = None) -> float:
    """ROC AUC behind the ``"roc_auc"`` scorer.

    With an explicit ``pos_label``, scikit-learn's scorer machinery already hands over
    the score of that class (positive column of ``predict_proba``, or a sign-flipped
    ``decision_function``). With ``pos_label=None`` it hands over the score of
    ``classes_[-1]``, the largest label, so the score is flipped when the inferred
    positive class is the smaller label.
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


@validate_params(
    {"pos_label": "no_validation", "zero_division": ZERO_DIVISION},
    prefer_skip_nested_validation=True,
)
def get_scorers(pos_label: Any = None, *, zero_division: Any = "warn") -> dict[str, Callable]:
    """Scorers for ``scoring=`` of ``cross_validate``, ``GridSearchCV``, ...

    Parameters
    ----------
    pos_label : int, str or None, default=None
        The positive class. ``None`` infers it in each fold as in
        :func:`~skhybrid.metrics.sensitivity_score` (``'malignant'``, else the larger
        number), which covers ``'benign'/'malignant'`` and ``0/1`` labels; pass it for
        any other labels.
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


#: Default scorers (``get_scorers()``): malignant / the larger number is the positive class.
SCORERS: dict[str, Callable] = get_scorers()
