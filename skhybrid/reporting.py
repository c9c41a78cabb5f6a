"""What an experiment writes and prints: the self-learning history table and the output folder.

One writer for ``skhybrid train``, ``skhybrid evaluate``, ``skhybrid demo`` and
:meth:`skhybrid.workflow.ExperimentResult.save`, so every command writes the same files the
same way; the estimators only compute (:class:`~skhybrid.SelfLearningRelabeler` keeps its
``history_``, this module renders it).

Files of an output folder: ``report.json`` (with a ``provenance`` block: versions, command line,
start time), ``predictions.csv`` (one row per image, and per repeat of a cross-validation),
``patients.csv`` (one row per patient), ``self_learning_history.md``, ROC / precision-recall
PNGs and ``model.joblib``.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .class_roles import positive_label

__all__ = [
    "PROVENANCE_PACKAGES",
    "format_self_learning_history",
    "patient_rows",
    "prediction_rows",
    "provenance",
    "utc_now",
    "write_outputs",
]

#: Distributions whose versions every ``report.json`` records: the ones that change numbers.
PROVENANCE_PACKAGES = ("skhybrid", "torch", "torchvision", "scikit-learn", "skorch", "numpy")
#: Digits of the probabilities in ``predictions.csv``: enough to rank, short enough to read.
CSV_DIGITS = 6


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
    predictions: Sequence[Mapping[str, Any]] | None = None,
) -> list[Path]:
    """Write an experiment's output folder; return the paths written, in order.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    summary : dict
        Written as ``report.json`` (numpy values and non-finite floats made JSON-safe). Its
        ``"provenance"`` entry is completed with :func:`provenance` (versions, command line),
        so every report says how it was produced; keys the summary already has are kept.
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
    predictions : sequence of dict, default=None
        Rows of :func:`prediction_rows`, written as ``predictions.csv``; ``patients.csv``
        (:func:`patient_rows`) is written from them, and with more than two classes the image
        confusion matrix (``confusion_matrix.png``). Nothing is written when empty.

    Returns
    -------
    list of Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if skipped is not None:
        summary = {**summary, "skipped": list(skipped)}
    summary = {**summary, "provenance": {**provenance(), **summary.get("provenance", {})}}
    written = [out / "report.json"]
    written[0].write_text(json.dumps(_jsonable(summary), indent=2) + "\n")
    if predictions:
        written.append(_write_csv(out / "predictions.csv", predictions))
        written.append(_write_csv(out / "patients.csv", patient_rows(predictions)))
    if history_table:
        (out / "self_learning_history.md").write_text(history_table + "\n")
        written.append(out / "self_learning_history.md")
    written += _write_plots(out, curves or {})
    if predictions:
        written += _write_confusion_matrix(out / "confusion_matrix.png", predictions)
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


def _write_confusion_matrix(path: Path, predictions: Sequence[Mapping[str, Any]]) -> list[Path]:
    """The image confusion matrix of k > 2 classes (subtypes), class names on both axes.

    Binary runs have their counts in the report (tp/fp/fn/tn) and their ROC and PR curves; a
    k-class run has no single positive class, so its matrix is the picture to read.
    """
    classes = [key[len("proba_") :] for key in predictions[0] if key.startswith("proba_")]
    if len(classes) <= 2:
        return []
    try:
        from .metrics import plot_confusion_matrix
    except ImportError as exc:  # pragma: no cover - matplotlib missing
        warnings.warn(f"Plots skipped: {exc}", stacklevel=3)
        return []
    truth = [str(row["true_label"]) for row in predictions]
    predicted = [str(row["predicted_label"]) for row in predictions]
    plot_confusion_matrix(truth, predicted, path, labels=classes, display_labels=classes)
    return [path]


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


# -- provenance ---------------------------------------------------------------------------------
def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the second (``2026-12-01T20:18:21+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What produced a report: package versions, Python, platform and the command line.

    Parameters
    ----------
    argv : sequence of str, default=None
        The command line; ``None`` records ``sys.argv``.

    Returns
    -------
    dict
        ``versions`` (``importlib.metadata`` versions of :data:`PROVENANCE_PACKAGES`; ``None``
        for one not installed), ``python``, ``platform``, ``command``.
    """
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": list(sys.argv if argv is None else argv),
    }


# -- per-image and per-patient tables -----------------------------------------------------------
def prediction_rows(
    classes: Sequence[Any],
    y_true: Sequence[Any],
    proba: Any,
    *,
    tile_proba: Any = None,
    y_pred: Sequence[Any] | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per image: its identifying columns, true and predicted label, probabilities.

    Parameters
    ----------
    classes : sequence
        The classifier's ``classes_`` (the columns of ``proba``).
    y_true : sequence of shape (n,)
        True labels.
    proba : array-like of shape (n, n_classes)
        Image probabilities.
    tile_proba : array-like of shape (n, T, n_classes), default=None
        Tile probabilities; the positive class's (by :mod:`skhybrid.class_roles`) are written
        as one ``;``-joined column, tiles in row-major order.
    y_pred : sequence of shape (n,), default=None
        Predicted labels; ``None`` takes the most probable class.
    columns : mapping of str to sequence, default=None
        Columns placed first, in order (``image``, ``file``, ``patient``, ``fold``, ...).

    Returns
    -------
    list of dict
        Keys: ``columns``, ``true_label``, ``predicted_label``, ``correct`` (0/1),
        ``proba_<class>`` for each class and ``tile_proba_<positive class>`` (with k > 2
        classes ``tile_class``: each tile's most probable class).
    """
    classes = np.asarray(classes)
    proba = np.asarray(proba, dtype=float)
    y_true = np.asarray(y_true)
    y_pred = classes[proba.argmax(axis=1)] if y_pred is None else np.asarray(y_pred)
    columns = dict(columns or {})
    # Binary: each tile's probability of the positive class. k classes (subtypes): no single
    # positive class, so each tile's most probable class.
    positive = positive_label(classes) if len(classes) == 2 else None
    tiles = tile_classes = None
    if tile_proba is not None and positive is not None:
        tiles = np.asarray(tile_proba, dtype=float)[..., list(classes).index(positive)]
    elif tile_proba is not None:
        tile_classes = classes[np.asarray(tile_proba).argmax(axis=-1)]
    rows = []
    for i in range(len(y_true)):
        row = {name: _plain(np.asarray(values)[i]) for name, values in columns.items()}
        row["true_label"] = _plain(y_true[i])
        row["predicted_label"] = _plain(y_pred[i])
        row["correct"] = int(y_true[i] == y_pred[i])
        for c, p in zip(classes, proba[i]):
            row[f"proba_{_plain(c)}"] = round(float(p), CSV_DIGITS)
        if tiles is not None:
            row[f"tile_proba_{_plain(positive)}"] = ";".join(
                f"{p:.{CSV_DIGITS}f}" for p in tiles[i]
            )
        if tile_classes is not None:
            row["tile_class"] = ";".join(str(_plain(c)) for c in tile_classes[i])
        rows.append(row)
    return rows


def patient_rows(predictions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per patient (and per ``repeat`` when the rows have one) of :func:`prediction_rows`.

    ``accuracy`` is the patient's share of correct images; their mean over the patients of a
    repeat is the BreakHis patient recognition rate (:func:`skhybrid.metrics.patient_score`).

    Parameters
    ----------
    predictions : sequence of dict
        Rows with ``patient``, ``true_label`` and ``correct`` (and optionally ``repeat``).

    Returns
    -------
    list of dict
        Keys ``repeat`` (if present), ``patient``, ``true_label`` (``;``-joined if a patient
        has images of several classes), ``images``, ``correct``, ``accuracy``; sorted.
    """
    by_patient: dict[tuple, dict[str, Any]] = {}
    has_repeat = bool(predictions) and "repeat" in predictions[0]
    for row in predictions:
        key = (row["repeat"], row["patient"]) if has_repeat else (row["patient"],)
        entry = by_patient.setdefault(key, {"labels": set(), "images": 0, "correct": 0})
        entry["labels"].add(str(row["true_label"]))
        entry["images"] += 1
        entry["correct"] += int(row["correct"])
    rows = []
    # By repeat (a number), then patient id as text (ids may mix types).
    for key in sorted(by_patient, key=lambda k: (*k[:-1], str(k[-1]))):
        entry = by_patient[key]
        row = {"repeat": key[0]} if has_repeat else {}
        row |= {
            "patient": key[-1],
            "true_label": ";".join(sorted(entry["labels"])),
            "images": entry["images"],
            "correct": entry["correct"],
            "accuracy": round(entry["correct"] / entry["images"], CSV_DIGITS),
        }
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
