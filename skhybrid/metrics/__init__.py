"""Binary metrics for benign-vs-malignant classification, on :mod:`sklearn.metrics`.

Sensitivity and specificity, a paper-style report (the rows of Tables 5-8 of the
hybrid CNN-LSTM paper), the BreakHis patient recognition rate, scorers for
:func:`sklearn.model_selection.cross_validate`, and ROC / precision-recall /
confusion-matrix plots. Laid out like :mod:`sklearn.metrics`:

* ``_classification``: the rates, scores and reports (:func:`binary_report`);
* ``_patient``: :func:`patient_score`;
* ``_scorer``: :func:`get_scorers` and :data:`SCORERS`;
* ``_plot``: the plots, on scikit-learn's Display classes;
* ``_base``: the input checks they share.

The positive class is the malignant one. Every function takes ``pos_label``; when it
is ``None`` the positive class is inferred from the labels by the library's class-role
rule, :mod:`skhybrid.class_roles` (see ``docs/design.md``).
"""

from ._base import DEFAULT_POS_LABEL, _as_labels, _positive_scores
from ._classification import (
    _COUNT_COLUMNS,
    _REPORT_COLUMNS,
    _REPORT_HEADERS,
    BinaryReport,
    _f1_score,
    _precision_score,
    binary_report,
    confusion_counts,
    format_reports,
    sensitivity_score,
    specificity_score,
)
from ._history import plot_training_history
from ._patient import patient_score
from ._plot import (
    CurveDisplays,
    plot_confusion_matrix,
    plot_precision_recall_curve,
    plot_roc_curve,
)
from ._scorer import SCORERS, _roc_auc_score, get_scorers

__all__ = [
    "SCORERS",
    "BinaryReport",
    "CurveDisplays",
    "binary_report",
    "confusion_counts",
    "format_reports",
    "get_scorers",
    "patient_score",
    "plot_confusion_matrix",
    "plot_precision_recall_curve",
    "plot_roc_curve",
    "plot_training_history",
    "sensitivity_score",
    "specificity_score",
]

# Importable here as before the split; the private functions are named by scorers pickled
# with earlier versions (make_scorer stores the function by its module path).
_COMPAT_NAMES = (
    DEFAULT_POS_LABEL,
    _COUNT_COLUMNS,
    _REPORT_COLUMNS,
    _REPORT_HEADERS,
    _as_labels,
    _f1_score,
    _positive_scores,
    _precision_score,
    _roc_auc_score,
)
