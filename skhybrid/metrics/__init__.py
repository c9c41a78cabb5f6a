"""Binary metrics for benign-vs-malignant classification, on :mod:`sklearn.metrics`.

Sensitivity and specificity, a paper-style report (the rows of Tables 5-8 of the
hybrid CNN-LSTM paper), the BreakHis patient recognition rate, scorers for
:func:`sklearn.model_selection.cross_validate`, and ROC / precision-recall /
confusion-matrix plots. Laid out like :mod:`sklearn.metrics`:

* ``_classification``: the rates, scores and reports (:func:`binary_report`);
* ``_multiclass``: the k-class report (:func:`multiclass_report`, BreakHis subtypes) and
  :func:`get_multiclass_scorers`;
* ``_patient``: :func:`patient_score`;
* ``_scorer``: :func:`get_scorers` and :data:`SCORERS`;
* ``_plot``: the plots, on scikit-learn's Display classes;
* ``_base``: the input checks they share.

With two classes the positive class is the malignant one. Every function takes ``pos_label``; when it
is ``None`` the positive class is inferred from the labels by the library's class-role
rule, :mod:`skhybrid.class_roles` (see ``docs/design.md``). With more than two classes (the
eight BreakHis subtypes) use :func:`multiclass_report`, :func:`get_multiclass_scorers` and
``plot_confusion_matrix(..., labels=...)``; the binary functions reject k labels.
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
from ._multiclass import MulticlassReport, get_multiclass_scorers, multiclass_report
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
    "MulticlassReport",
    "binary_report",
    "confusion_counts",
    "format_reports",
    "get_multiclass_scorers",
    "get_scorers",
    "multiclass_report",
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
