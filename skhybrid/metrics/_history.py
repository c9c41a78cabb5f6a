"""Training curves of a fitted skorch estimator: loss and accuracy per epoch.

The estimators record, per epoch, ``train_loss``, ``valid_loss``, ``train_acc``,
``valid_acc``, ``backbone_frozen`` (phase 1, CNN frozen) and, at the end of a run with a
validation split, ``best_epoch_restored`` (see ``skhybrid/estimators/_callbacks.py``).
:func:`plot_training_history` draws them as the paper's Figures 11-12 (training loss and
accuracy) on a bare :class:`matplotlib.figure.Figure` (pyplot untouched, as the other plots of
:mod:`skhybrid.metrics`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._plot import _import_figure, _save

#: Names of the curves of each metric family: (history key, legend label).
_SERIES = {
    "loss": (("train_loss", "training"), ("valid_loss", "validation")),
    "acc": (("train_acc", "training"), ("valid_acc", "validation")),
}
_YLABELS = {"loss": "loss", "acc": "accuracy"}


def _history_rows(estimator_or_history: Any) -> list[dict[str, Any]]:
    """The list of per-epoch dicts of a fitted estimator, a skorch History or a list."""
    history = getattr(estimator_or_history, "history_", None)
    if history is None:
        history = getattr(estimator_or_history, "history", estimator_or_history)
    if hasattr(history, "to_list"):  # skorch.callbacks.History
        history = history.to_list()
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)):
        raise TypeError(
            "plot_training_history takes a fitted skorch estimator, its history_ or a list of "
            f"per-epoch dicts; got {type(estimator_or_history).__name__}."
        )
    rows = [dict(row) for row in history]
    if not rows:
        raise ValueError("The training history is empty: fit the estimator first.")
    return rows


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values of ``key``, skipping epochs that did not record it."""
    points = [
        (row.get("epoch", i + 1), row[key])
        for i, row in enumerate(rows)
        if row.get(key) is not None and not _is_nan(row[key])
    ]
    if not points:
        return np.empty(0), np.empty(0)
    epochs, values = zip(*points)
    return np.asarray(epochs, dtype=float), np.asarray(values, dtype=float)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _best_epoch(rows: list[dict[str, Any]]) -> int | None:
    """The epoch whose weights the model kept, else the epoch of the lowest ``valid_loss``."""
    for row in reversed(rows):
        if row.get("best_epoch_restored") is not None:
            return int(row["best_epoch_restored"])
    epochs, losses = _series(rows, "valid_loss")
    return int(epochs[int(np.argmin(losses))]) if len(losses) else None


def _last_frozen_epoch(rows: list[dict[str, Any]]) -> int | None:
    """The last epoch of phase 1 (CNN frozen), when phase 2 followed it."""
    frozen = [row.get("epoch", i + 1) for i, row in enumerate(rows) if row.get("backbone_frozen")]
    if not frozen or len(frozen) == len(rows):
        return None  # never frozen, or frozen throughout: there is no change to mark
    return int(max(frozen))


def plot_training_history(
    estimator_or_history: Any,
    metrics: Sequence[str] = ("loss", "acc"),
    path: str | os.PathLike | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
) -> tuple[Any, np.ndarray]:
    """Plot loss and accuracy per epoch, training and validation, of a fitted estimator.

    One axes per metric family; each shows the training and the validation curve (those
    recorded). A dotted vertical line marks the phase change (the last epoch with the CNN
    frozen, from ``backbone_frozen``) and a dashed one the best epoch, whose weights the
    model kept (``best_epoch_restored``, else the epoch of the lowest ``valid_loss``).
    Needs matplotlib (``pip install 'skhybrid[plots]'``).

    Parameters
    ----------
    estimator_or_history : estimator, skorch History or list of dict
        A fitted :class:`~skhybrid.CNNClassifier` / :class:`~skhybrid.HybridCNNLSTMClassifier`
        (or any skorch net), its ``history_``, or the per-epoch dicts of one.
    metrics : sequence of {"loss", "acc"}, default=("loss", "acc")
        The families to draw, one axes each: ``"loss"`` (``train_loss``, ``valid_loss``),
        ``"acc"`` (``train_acc``, ``valid_acc``).
    path : str or path-like, default=None
        Where to save the figure; its directory must exist.
    ax : matplotlib Axes or sequence of Axes, default=None
        One axes per metric; a new bare ``matplotlib.figure.Figure`` with one row of axes is
        created when ``None``.
    title : str, default=None
        Figure title (``suptitle``) when the figure is created here, else the title of the
        first axes.

    Returns
    -------
    figure : matplotlib Figure
        The figure the axes belong to.
    axes : ndarray of Axes of shape (len(metrics),)
        The axes, in the order of ``metrics``.

    Raises
    ------
    ValueError
        For an unknown metric, an empty history, a history that recorded none of the curves
        of a metric, or ``ax`` of the wrong length.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in _SERIES]
    if unknown or not metrics:
        raise ValueError(
            f"metrics must be a non-empty sequence of {tuple(_SERIES)}; got {metrics}."
        )
    rows = _history_rows(estimator_or_history)
    Figure = _import_figure()
    from matplotlib.ticker import MaxNLocator

    created = ax is None
    if created:
        fig = Figure(figsize=(4.5 * len(metrics), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)[0])
    else:
        axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
        if len(axes) != len(metrics):
            raise ValueError(f"ax has {len(axes)} axes for {len(metrics)} metrics {metrics}.")
        fig = axes[0].figure
    best, phase_end = _best_epoch(rows), _last_frozen_epoch(rows)
    for metric, axis in zip(metrics, axes):
        drawn = 0
        for key, label in _SERIES[metric]:
            epochs, values = _series(rows, key)
            if len(values):
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
                drawn += 1
        if not drawn:
            keys = [key for key, _ in _SERIES[metric]]
            raise ValueError(f"The history records none of {keys}; cannot plot {metric!r}.")
        if phase_end is not None:
            axis.axvline(phase_end + 0.5, color="grey", linestyle=":", label="CNN unfrozen")
        if best is not None:
            axis.axvline(
                best, color="black", linestyle="--", linewidth=1, label=f"best epoch ({best})"
            )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_xlabel("epoch")
        axis.set_ylabel(_YLABELS[metric])
        axis.legend(loc="best", fontsize="small")
    if title is not None:
        (fig.suptitle if created else axes[0].set_title)(title)
    _save(fig, path)
    return fig, axes
