"""ROC, precision-recall and confusion-matrix plots on scikit-learn's Display classes.

Each plot is drawn by :class:`sklearn.metrics.RocCurveDisplay`,
:class:`~sklearn.metrics.PrecisionRecallDisplay` or
:class:`~sklearn.metrics.ConfusionMatrixDisplay` on axes of a bare
:class:`matplotlib.figure.Figure` (never pyplot: no global state, no backend switch, nothing
accumulates when plotting in a loop), and the Display is returned. What skhybrid adds: the
positive class of :mod:`skhybrid.class_roles`, ``predict_proba`` columns, several named curves,
a title and saving to a file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    confusion_matrix,
)
from sklearn.utils._param_validation import StrOptions, validate_params
from sklearn.utils.multiclass import unique_labels

from ._base import _as_labels, _check_binary_targets, _positive_scores, _resolve_pos_label
from ._multiclass import _check_labels

_CHANCE_GID = "skhybrid-chance"


class _FigureAttributes:
    """In skhybrid 0.1 the plots returned the ``Figure``: forward its attributes.

    ``plot_roc_curve(...).savefig(...)`` and ``.axes[0]`` keep working, with a
    ``FutureWarning`` that points to ``.figure_`` and ``.ax_``.
    """

    def __getattr__(self, name: str) -> Any:
        # Only called for names the Display lacks. Only the Figure class's own public names
        # are forwarded, so sklearn's getattr(self, "...", default) probes are unaffected.
        figure = self.__dict__.get("figure_")
        if name.startswith("_") or figure is None or not hasattr(type(figure), name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(
            f"The skhybrid.metrics plots return a {type(self).__name__.lstrip('_')} instead of "
            f"the Figure; use .figure_.{name} (and .ax_ for the axes). Reaching the Figure's "
            f"{name!r} through the display will stop working in a future release.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(figure, name)


class _RocCurveDisplay(_FigureAttributes, RocCurveDisplay):
    pass


class _PrecisionRecallDisplay(_FigureAttributes, PrecisionRecallDisplay):
    pass


class _ConfusionMatrixDisplay(_FigureAttributes, ConfusionMatrixDisplay):
    pass


class CurveDisplays(_FigureAttributes, dict):
    """The displays of several named curves on one axes: ``{name: display}``.

    Returned by :func:`plot_roc_curve` and :func:`plot_precision_recall_curve` when
    ``y_score`` is a dict.

    Attributes
    ----------
    figure_ : matplotlib Figure
        The figure of the axes.
    ax_ : matplotlib Axes
        The axes the curves are drawn on.
    """

    def __init__(self, displays: Mapping[str, Any], ax: Any) -> None:
        super().__init__(displays)
        self.ax_ = ax
        self.figure_ = ax.figure


def _import_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, an optional dependency of skhybrid: "
            "pip install 'skhybrid[plots]'"
        ) from exc
    return Figure


def _new_axes(ax: Any, figsize: tuple[float, float] = (5.0, 4.5)) -> Any:
    Figure = _import_figure()
    if ax is not None:
        return ax
    # A bare Figure, not pyplot; the Displays would call plt.subplots() without axes.
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _has_chance_line(ax: Any) -> bool:
    # Several calls may share one axes (tile- and image-level curves); the ROC diagonal is
    # the same for all of them, so it is drawn once.
    return any(line.get_gid() == _CHANCE_GID for line in ax.lines)


def _finish(displays: dict, ax: Any, title: str | None, path: Any, many: bool) -> Any:
    if title is not None:
        ax.set_title(title)
    _save(ax.figure, path)
    return CurveDisplays(displays, ax) if many else next(iter(displays.values()))


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


_CURVE_PARAMS = {
    "y_true": ["array-like"],
    "y_score": ["array-like", Mapping],
    "path": [str, os.PathLike, None],
    "pos_label": "no_validation",
    "classes": ["array-like", None],
    "ax": "no_validation",
    "label": [str, None],
    "title": [str, None],
}


@validate_params(_CURVE_PARAMS, prefer_skip_nested_validation=True)
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

    Drawn by :meth:`sklearn.metrics.RocCurveDisplay.from_predictions`. Needs matplotlib
    (``pip install 'skhybrid[plots]'``).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Ground-truth labels; both classes must be present.
    y_score : array-like or dict of str to array-like
        Scores of the positive class, 1-D or ``(n_samples, 2)`` ``predict_proba``
        (see :func:`~skhybrid.metrics.binary_report` for the column choice), or a dict
        mapping curve names to such arrays to draw several curves for the same ``y_true``.
        For curves on different samples (e.g. tiles vs images) call again with ``ax=``.
    path : str or path-like, default=None
        Where to save the figure (format from the suffix, PNG by default). Its
        directory must exist.
    pos_label : int, str or None, default=None
        The positive class; ``None`` infers it as in
        :func:`~skhybrid.metrics.sensitivity_score`.
    classes : array-like of shape (2,), default=None
        Labels of the columns of 2-D scores, e.g. ``estimator.classes_``.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new bare ``matplotlib.figure.Figure`` is created when ``None``.
    label : str, default=None
        Legend name of the curve when ``y_score`` is an array.
    title : str or None, default="ROC curve"
        Axes title.

    Returns
    -------
    sklearn.metrics.RocCurveDisplay or CurveDisplays
        The display (``.fpr``, ``.tpr``, ``.roc_auc``, ``.ax_``, ``.figure_``); for a dict
        ``y_score``, a dict of them by name. The Figure's own attributes (returned in
        skhybrid 0.1) still work through it, with a ``FutureWarning``.
    """
    y_true, pos_label, curves = _curves(y_true, y_score, pos_label, classes, label)
    ax = _new_axes(ax)
    displays = {}
    for name, score in curves:
        displays[name] = _RocCurveDisplay.from_predictions(
            y_true,
            score,
            pos_label=pos_label,
            name=name,
            ax=ax,
            plot_chance_level=not _has_chance_line(ax),
            chance_level_kw={"gid": _CHANCE_GID},
        )
    return _finish(displays, ax, title, path, isinstance(y_score, Mapping))


@validate_params(_CURVE_PARAMS, prefer_skip_nested_validation=True)
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

    Drawn by :meth:`sklearn.metrics.PrecisionRecallDisplay.from_predictions`. Parameters are
    those of :func:`plot_roc_curve`. Each legend entry shows the average precision (AP). Each
    curve gets its own chance line, in its colour, at the prevalence of the positive class in
    its ``y_true`` (the precision of a random classifier), so curves on different samples
    (``ax=``) each have the right one.

    Returns
    -------
    sklearn.metrics.PrecisionRecallDisplay or CurveDisplays
        The display (``.precision``, ``.recall``, ``.average_precision``,
        ``.prevalence_pos_label``, ``.chance_level_``, ``.ax_``, ``.figure_``); for a dict
        ``y_score``, a dict of them by name. The Figure's own attributes (returned in
        skhybrid 0.1) still work through it, with a ``FutureWarning``.
    """
    y_true, pos_label, curves = _curves(y_true, y_score, pos_label, classes, label)
    ax = _new_axes(ax)
    displays = {}
    for name, score in curves:
        display = _PrecisionRecallDisplay.from_predictions(
            y_true, score, pos_label=pos_label, name=name, ax=ax, plot_chance_level=True
        )
        # scikit-learn draws every chance line black with the same legend text; colour and
        # name each after its curve so that several on one axes can be told apart.
        display.chance_level_.set_color(display.line_.get_color())
        if name:
            display.chance_level_.set_label(
                f"{name} chance level (AP = {display.prevalence_pos_label:0.2f})"
            )
        displays[name] = display
    ax.legend(loc="lower left")  # again, so that it shows the recoloured lines
    return _finish(displays, ax, title, path, isinstance(y_score, Mapping))


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "path": [str, os.PathLike, None],
        "pos_label": "no_validation",
        "labels": ["array-like", None],
        "display_labels": ["array-like", None],
        "normalize": [StrOptions({"true", "pred", "all"}), None],
        "ax": "no_validation",
        "title": [str, None],
        "cmap": "no_validation",
    },
    prefer_skip_nested_validation=True,
)
def plot_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike | None = None,
    *,
    pos_label: Any = None,
    labels: Any = None,
    display_labels: Any = None,
    normalize: str | None = None,
    ax: Any = None,
    title: str | None = "Confusion matrix",
    cmap: str = "Blues",
) -> Any:
    """Plot the confusion matrix, 2x2 (negative class first) or k x k, optionally saved as PNG.

    Drawn by :class:`sklearn.metrics.ConfusionMatrixDisplay`. With at most two labels and no
    ``labels``, the binary matrix ``confusion_matrix(..., labels=[negative, positive])``. With
    ``labels`` or more than two labels (the BreakHis subtypes), the k x k matrix
    ``confusion_matrix(y_true, y_pred, labels=labels)`` with a class name on every row and
    column, the column names rotated by 45 degrees, on a figure sized for k classes.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Ground-truth and predicted labels.
    path : str or path-like, default=None
        Where to save the figure; its directory must exist.
    pos_label : int, str or None, default=None
        The positive class of a binary matrix, shown in the second row and column.
    labels : array-like of shape (n_classes,), default=None
        The classes, in the order of the rows and columns (e.g. ``estimator.classes_``, so that
        a class absent from a fold still gets its row); selects the k x k matrix. ``None``:
        the sorted labels of ``y_true`` and ``y_pred``. Not with ``pos_label``.
    display_labels : array-like of str, default=None
        Names shown for the rows and columns, one per class in their order (e.g.
        ``target_names`` for integer subtype labels; for a binary matrix, negative first).
        ``None`` shows the labels themselves.
    normalize : {"true", "pred", "all"} or None, default=None
        As in :func:`sklearn.metrics.confusion_matrix`: divide by row sums, column
        sums or the total; ``None`` shows counts.
    ax : matplotlib Axes, default=None
        Axes to draw on; a new bare ``matplotlib.figure.Figure`` is created when ``None``.
    title : str or None, default="Confusion matrix"
        Axes title.
    cmap : str, default="Blues"
        Colormap name.

    Returns
    -------
    sklearn.metrics.ConfusionMatrixDisplay
        The display (``.confusion_matrix``, ``.text_``, ``.ax_``, ``.figure_``). The
        Figure's own attributes (returned in skhybrid 0.1) still work through it, with
        a ``FutureWarning``.
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    present = unique_labels(y_true, y_pred)
    if labels is None and len(present) <= 2:
        matrix, names = _binary_matrix(y_true, y_pred, pos_label, normalize)
    else:
        if pos_label is not None:
            raise ValueError(
                "pos_label applies to the binary matrix only; with labels= or more than two "
                "classes every class has its own row and column."
            )
        labels = _check_labels(labels, present)
        matrix = confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
        names = [str(label.item() if isinstance(label, np.generic) else label) for label in labels]
    if display_labels is not None:
        display_labels = [str(name) for name in np.asarray(display_labels).tolist()]
        if len(display_labels) != len(names):
            raise ValueError(
                f"display_labels has {len(display_labels)} names for a {len(names)}x{len(names)} "
                f"matrix (classes {names!r})."
            )
        names = display_labels
    k = len(names)
    # Room for k long class names; 45-degree column names keep them from overlapping.
    ax = _new_axes(ax, figsize=(5.0, 4.5) if k <= 2 else (1.5 + 0.9 * k, 1.2 + 0.8 * k))
    display = _ConfusionMatrixDisplay(matrix, display_labels=names).plot(
        ax=ax,
        cmap=cmap,
        values_format=".2f" if normalize else None,
        xticks_rotation=0.0 if k <= 2 else 45.0,
    )
    if k > 2:
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")
    return _finish({None: display}, ax, title, path, many=False)


def _binary_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, pos_label: Any, normalize: str | None
) -> tuple[np.ndarray, list[str]]:
    y_true, y_pred, pos_label = _check_binary_targets(y_true, y_pred, pos_label)
    # "Is positive" as in the scores: every other label is negative, even when absent.
    matrix = confusion_matrix(
        y_true == pos_label, y_pred == pos_label, labels=[False, True], normalize=normalize
    )
    negatives = [label for label in unique_labels(y_true, y_pred).tolist() if label != pos_label]
    names = [str(negatives[0]) if negatives else f"not {pos_label}", str(pos_label)]
    return matrix, names
