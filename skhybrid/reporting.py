"""What an experiment writes and prints: the self-learning history table and the output folder.

One writer for ``skhybrid train``, ``skhybrid evaluate``, ``skhybrid demo`` and
:meth:`skhybrid.workflow.ExperimentResult.save`, so every command writes the same files the
same way; the estimators only compute (:class:`~skhybrid.SelfLearningRelabeler` keeps its
``history_``, this module renders it).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .class_roles import positive_label

__all__ = ["format_self_learning_history", "write_outputs"]


def _plain(label: Any) -> Any:
    """A numpy scalar label as a plain Python value (the keys of ``history_``)."""
    return label.item() if isinstance(label, np.generic) else label


def format_self_learning_history(relabeler: Any, tile_truth: Any = None) -> str:
    """Tile class counts per round of a fitted relabeler as a Markdown table (paper's Table 4).

    Parameters
    ----------
    relabeler : SelfLearningRelabeler
        A fitted relabeler (it has ``history_`` and ``tile_label_history_``).
    tile_truth : array-like of shape (n_images, n_tiles), default=None
        Ground-truth tile labels of the training bags (synthetic data); adds a column with
        the accuracy of each round's tile labels.

    Returns
    -------
    table : str
        Markdown table, one row per round, round 0 being the inherited labels.

    Raises
    ------
    ValueError
        When ``tile_truth`` does not have the shape of the relabeler's ``tile_labels_``.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(relabeler, "history_")
    classes = relabeler.classes_
    header = ["Round", *(str(_plain(c)) for c in classes), "Relabeled", "To negative"]
    header.append("Flipped back")
    if tile_truth is not None:
        tile_truth = np.asarray(tile_truth)
        if tile_truth.shape != relabeler.tile_labels_.shape:
            raise ValueError(
                f"tile_truth must have shape {relabeler.tile_labels_.shape}, "
                f"got {tile_truth.shape}."
            )
        header.append("Tile accuracy")
    rows = []
    for entry, labels in zip(relabeler.history_, relabeler.tile_label_history_):
        name = "0 (inherited)" if entry["round"] == 0 else str(entry["round"])
        row = [name, *(str(entry["class_counts"][_plain(c)]) for c in classes)]
        row += [str(entry[key]) for key in ("n_relabeled", "n_to_negative", "n_to_positive")]
        if tile_truth is not None:
            row.append(f"{np.mean(labels == tile_truth):.3f}")
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(
    out_dir: str | os.PathLike[str],
    summary: dict[str, Any],
    *,
    curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    history_table: str = "",
    model: Any = None,
    keep_optimizer_state: bool = False,
    skipped: list[dict[str, str]] | None = None,
) -> list[Path]:
    """Write an experiment's output folder; return the paths written, in order.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    summary : dict
        Written as ``report.json`` (numpy values and non-finite floats made JSON-safe).
    curves : dict of str to (y_true, positive_scores), default=None
        One ROC and one precision-recall curve per level on shared axes (``roc_curve.png``,
        ``pr_curve.png``); a level whose labels hold one class is left out. Plots need
        matplotlib; without it they are skipped with a warning and the rest is written.
    history_table : str, default=""
        The self-learning history, written as ``self_learning_history.md`` when not empty.
    model : estimator, default=None
        Written as ``model.joblib`` with :func:`skhybrid.save_model` when given.
    keep_optimizer_state : bool, default=False
        Passed to :func:`skhybrid.save_model`.
    skipped : list of dict, default=None
        The input files left out, ``{"file": path, "reason": why}`` each; written as the
        ``"skipped"`` field of ``report.json`` (an empty list says none was) when given.

    Returns
    -------
    list of Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if skipped is not None:
        summary = {**summary, "skipped": list(skipped)}
    written = [out / "report.json"]
    written[0].write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    if history_table:
        (out / "self_learning_history.md").write_text(history_table + "\n")
        written.append(out / "self_learning_history.md")
    written += _write_plots(out, curves or {})
    if model is not None:
        from .model_io import save_model

        written.append(
            save_model(model, out / "model.joblib", keep_optimizer_state=keep_optimizer_state)
        )
    return written


def _write_plots(out: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Path]:
    try:
        from .metrics import plot_precision_recall_curve, plot_roc_curve

        written = []
        for name, plot in (
            ("roc_curve", plot_roc_curve),
            ("pr_curve", plot_precision_recall_curve),
        ):
            if _plot_levels(plot, curves, out / f"{name}.png"):
                written.append(out / f"{name}.png")
        return written
    except ImportError as exc:
        warnings.warn(f"Plots skipped: {exc}", stacklevel=3)
        return []


def _plot_levels(plot: Any, curves: dict, path: Path) -> bool:
    """Draw one curve per level that has both classes on shared axes; save when any."""
    display = None
    for level, (truth, score) in curves.items():
        if len(np.unique(truth)) < 2:
            continue
        # The positive class by the one class-role rule, not a hard-coded name.
        ax = None if display is None else display.ax_
        display = plot(truth, score, pos_label=positive_label(truth), ax=ax, label=level)
    if display is None:
        return False
    display.figure_.savefig(path, dpi=120, bbox_inches="tight")
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
