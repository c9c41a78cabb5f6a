"""Input checks shared by the metrics, the scorers and the plots.

Labels and scores are checked here once, with messages that say what to pass instead; the
metrics themselves are scikit-learn's. The positive class comes from the library's one
class-role rule, :func:`skhybrid.class_roles.positive_label` (see ``docs/design.md``).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d

from ..class_roles import positive_label

#: Label treated as positive by default when labels are strings.
DEFAULT_POS_LABEL = "malignant"

#: ``zero_division`` as scikit-learn's own metrics constrain it.
ZERO_DIVISION = [Options(Real, {0.0, 1.0}), "nan", StrOptions({"warn"})]


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
