"""The whole method as one reusable routine: tiles, self-learning, a classifier, evaluation.

The command line (``skhybrid demo`` / ``train`` / ``evaluate``) and the paper reproduction
script call these functions; they are public so that a notebook can run the same experiment.

Protocols (see :mod:`skhybrid.splits`):

``"patient"`` (default)
    Images are split by patient; the relabeler sees only training images; the model is scored on
    held-out patients at image level (and at tile level against ground-truth tile labels when
    the data set has them, as the synthetic one does).
``"random-tile"``
    The paper's protocol: tile labels are corrected on all images, then *tiles* are split at
    random. It leaks (tiles of one image on both sides) and is reported as such.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from .class_roles import roles_of
from .metrics import BinaryReport, binary_report, patient_score
from .splits import PROTOCOLS, patient_split_indices, random_tile_split_indices
from .tiling import SubImageTiler, flatten_bags

__all__ = [
    "ExperimentResult",
    "default_aggregation",
    "make_classifier",
    "make_relabeling_proposer",
    "run_experiment",
    "score_images",
]

MODELS = ("hybrid", "cnn")
RELABELERS = ("features", "model")
POSITIVE = "malignant"
#: Reports give 0 for a metric with no positive prediction (a small or failed model) instead
#: of printing a warning per metric between the progress lines.
ZERO_DIVISION = 0.0


def make_classifier(model: str = "hybrid", **params: Any) -> Any:
    """Build a ``HybridCNNLSTMClassifier`` (``model="hybrid"``) or a ``CNNClassifier``.

    Parameters
    ----------
    model : {"hybrid", "cnn"}, default="hybrid"
    **params
        Estimator parameters (``backbone``, ``weights``, ``max_epochs``, ...).
    """
    from .estimators import CNNClassifier, HybridCNNLSTMClassifier

    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}.")
    if model == "cnn":
        params = {k: v for k, v in params.items() if k not in {"fusion", "lstm_hidden_size"}}
        return CNNClassifier(**params)
    return HybridCNNLSTMClassifier(**params)


def default_aggregation(self_learning_rounds: int) -> str:
    """How a classifier trained in :func:`run_experiment` should turn tiles into images.

    After self-learning the tile labels follow the rule "a malignant image holds at least one
    malignant tile", and the model calls the benign tiles of malignant images benign, so the
    mean of the tiles under-calls those images: ``"mil"`` (malignant as soon as one tile is).
    Without self-learning every tile carries its image's label and ``"mean"`` is the vote.
    """
    return "mil" if self_learning_rounds > 0 else "mean"


def make_relabeling_proposer(random_state: Any = None) -> Pipeline:
    """The cheap tile classifier used to propose label corrections.

    Colour/texture features with a logistic regression: seconds instead of hours, and on real
    BreakHis a strong baseline by itself (ROC AUC about 0.91 patient-wise, DESIGN.md).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .features import ColorTextureFeatures

    return Pipeline(
        [
            ("features", ColorTextureFeatures()),
            ("scale", StandardScaler()),
            ("logistic", LogisticRegression(max_iter=2000, random_state=random_state)),
        ]
    )


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` measured and fitted.

    Attributes
    ----------
    protocol : str
        ``"patient"`` or ``"random-tile"``.
    reports : dict of str to BinaryReport
        ``"image"``, ``"tile"`` (against ground truth when known) and, for the random-tile
        protocol, ``"tile (corrected labels)"``.
    patient_score : float or None
        BreakHis patient recognition rate on the test images (patient protocol).
    history : list of dict
        The relabeler's per-round history (empty without self-learning).
    history_table : str
        The history as a Markdown table in the paper's Table 4 layout.
    tile_label_accuracy : dict
        Accuracy of the training tile labels against ground truth before and after
        self-learning (only when ground-truth tile labels are known).
    model : Pipeline
        The fitted ``SubImageTiler`` + classifier, ready for :func:`skhybrid.save_model`.
    curves : dict
        ``{level: (y_true, positive_scores)}`` for ROC / precision-recall plots.
    info : dict
        Sizes, timings and settings.
    """

    protocol: str
    reports: dict[str, BinaryReport]
    patient_score: float | None
    history: list[dict[str, Any]]
    history_table: str
    tile_label_accuracy: dict[str, float]
    model: Pipeline
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no model, no curves)."""
        return {
            "protocol": self.protocol,
            "leaky": self.protocol != "patient",
            "reports": {name: report.to_dict() for name, report in self.reports.items()},
            "patient_score": self.patient_score,
            "self_learning_history": self.history,
            "tile_label_accuracy": self.tile_label_accuracy,
            "info": self.info,
        }

    def save(
        self,
        out_dir: str | os.PathLike[str],
        *,
        save_model: bool = True,
        keep_optimizer_state: bool = False,
    ) -> list[Path]:
        """Write ``report.json``, ROC / precision-recall PNGs and ``model.joblib``.

        The model is written for prediction, without the optimizer's state (a third of the
        size), unless ``keep_optimizer_state`` (see :func:`skhybrid.save_model`). Plots need
        matplotlib (``pip install 'skhybrid[plots]'``); without it they are skipped with a
        warning and the rest is still written.
        """
        import warnings

        from .metrics import plot_precision_recall_curve, plot_roc_curve
        from .model_io import save_model as dump

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "report.json"]
        (out / "report.json").write_text(json.dumps(_jsonable(self.to_dict()), indent=2) + "\n")
        if self.history_table:
            (out / "self_learning_history.md").write_text(self.history_table + "\n")
            written.append(out / "self_learning_history.md")
        truths = {level: truth for level, (truth, _) in self.curves.items()}
        scores = {level: score for level, (_, score) in self.curves.items()}
        try:
            for name, plot in (
                ("roc_curve", plot_roc_curve),
                ("pr_curve", plot_precision_recall_curve),
            ):
                if _plot_levels(plot, truths, scores, out / f"{name}.png"):
                    written.append(out / f"{name}.png")
        except ImportError as exc:
            warnings.warn(f"Plots skipped: {exc}", stacklevel=2)
        if save_model:
            written.append(
                dump(self.model, out / "model.joblib", keep_optimizer_state=keep_optimizer_state)
            )
        return written


def _plot_levels(plot: Any, truths: dict, scores: dict, path: Path) -> bool:
    """Draw one curve per level that has both classes on shared axes; save when any."""
    fig = None
    ax = None
    for level, score in scores.items():
        if len(np.unique(truths[level])) < 2:
            continue
        fig = plot(truths[level], score, pos_label=POSITIVE, ax=ax, label=level)
        ax = fig.axes[0]
    if fig is None:
        return False
    fig.savefig(path, dpi=120, bbox_inches="tight")
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


def _positive_column(estimator: Any) -> int:
    return roles_of(estimator).positive_index


def score_images(
    model: Any, X: Any, y: Any, patients: Any = None, *, tile_truth: Any = None
) -> tuple[dict[str, BinaryReport], float | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Score a fitted tiler + classifier Pipeline on whole images.

    Parameters
    ----------
    model : Pipeline
        ``SubImageTiler`` followed by a classifier with ``predict_proba_tiles``.
    X : images
        Anything the tiler takes (arrays, PIL images, file paths).
    y : array-like of str
        Image labels (``'benign'``/``'malignant'``).
    patients : array-like, optional
        Patient ids, for the patient recognition rate.
    tile_truth : array-like of shape (n, T), optional
        Ground-truth tile labels, for a tile-level report.

    Returns
    -------
    reports, patient_rate, curves
    """
    tiler, classifier = model.steps[0][1], model.steps[-1][1]
    bags = tiler.transform(X)
    if len(model.steps) > 2:
        bags = Pipeline(model.steps[1:-1]).transform(bags)
    return _score_bags(classifier, bags, np.asarray(y), patients, tile_truth)


def _tile_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels).reshape(-1) == np.asarray(truth).reshape(-1)))


def _patients_per_class(y: np.ndarray, groups: np.ndarray) -> list[int]:
    """Number of distinct patients with images of each class."""
    return [len(np.unique(groups[y == label])) for label in np.unique(y)]


def _relabel(
    bags: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    rounds: int,
    proposer: Any,
    random_state: Any,
    verbose: int,
) -> Any:
    from .self_learning import SelfLearningRelabeler

    # Out-of-fold proposals are grouped by patient, so a tile is never judged by a model that
    # saw its patient's staining. Every training fold needs both classes: with fewer than two
    # patients in a class (a small demo or sample folder), the groups fall back to images.
    folds = min(5, *_patients_per_class(y, groups))
    if folds < 2:
        groups = None
        folds = min(5, *np.unique(y, return_counts=True)[1])
    relabeler = SelfLearningRelabeler(
        proposer, n_rounds=rounds, cv=max(2, folds), random_state=random_state, verbose=verbose
    )
    return relabeler.fit(bags, y, groups=groups)


def run_experiment(
    X: Any,
    y: Any,
    patients: Any,
    *,
    classifier: Any,
    tiler: SubImageTiler | None = None,
    protocol: str = "patient",
    self_learning_rounds: int = 4,
    relabel_with: str = "features",
    tile_truth: Any = None,
    test_size: float = 0.25,
    random_state: Any = 0,
    verbose: int = 1,
) -> ExperimentResult:
    """Run the paper's method end to end under an evaluation protocol.

    Parameters
    ----------
    X : images
        uint8 array ``(n, H, W, 3)`` or a list of arrays / PIL images / file paths.
    y : array-like of shape (n,)
        Image labels; ``'benign'``/``'malignant'`` strings (ints 0/1 are mapped to them).
    patients : array-like of shape (n,)
        Patient (slide) id per image.
    classifier : estimator
        An unfitted ``HybridCNNLSTMClassifier`` / ``CNNClassifier`` (cloned, never modified).
    tiler : SubImageTiler, optional
        Defaults to ``SubImageTiler(grid=(3, 3), tile_size=(224, 224))`` as in the paper.
    protocol : {"patient", "random-tile"}, default="patient"
    self_learning_rounds : int, default=4
        ``0`` trains on inherited tile labels.
    relabel_with : {"features", "model"}, default="features"
        Tile classifier proposing corrections: cheap colour/texture features + logistic
        regression, or clones of ``classifier`` itself as in the paper (k-fold fits per round).
    tile_truth : array-like of shape (n, T), optional
        Ground-truth tile labels (synthetic data), for tile-level scores.
    test_size : float, default=0.25
    random_state : int or None, default=0
    verbose : int, default=1

    Returns
    -------
    ExperimentResult
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    if relabel_with not in RELABELERS:
        raise ValueError(f"relabel_with must be one of {RELABELERS}, got {relabel_with!r}.")
    y = _as_named_labels(y)
    patients = np.asarray(patients)
    if tile_truth is not None:
        tile_truth = _as_named_labels(tile_truth)
    tiler = clone(tiler) if tiler is not None else SubImageTiler(tile_size=(224, 224))
    classifier = clone(classifier)
    log = _logger(verbose)
    started = time.perf_counter()

    log(f"Cutting {len(y)} images into tiles ...")
    bags = tiler.fit_transform(X)
    n_images, n_tiles = bags.shape[:2]
    proposer = make_relabeling_proposer(random_state) if relabel_with == "features" else classifier

    if protocol == "patient":
        train, test = patient_split_indices(
            y, patients, test_size=test_size, random_state=random_state
        )
        log(
            f"Patient-wise split: {len(train)} training images ({len(np.unique(patients[train]))} "
            f"patients), {len(test)} test images ({len(np.unique(patients[test]))} patients)."
        )
        train_labels: np.ndarray = y[train]
        history: list[dict[str, Any]] = []
        table = ""
        accuracy: dict[str, float] = {}
        if self_learning_rounds > 0:
            log(f"Self-learning: up to {self_learning_rounds} rounds of tile relabeling ...")
            relabeler = _relabel(
                bags[train],
                y[train],
                patients[train],
                rounds=self_learning_rounds,
                proposer=proposer,
                random_state=random_state,
                verbose=max(verbose - 1, 0),
            )
            train_labels = relabeler.tile_labels_
            history = relabeler.history_
            table = relabeler.format_history(None if tile_truth is None else tile_truth[train])
            log(table)
        if tile_truth is not None:
            truth = tile_truth[train]
            accuracy["inherited"] = _tile_accuracy(np.repeat(y[train], n_tiles), truth)
            accuracy["corrected"] = _tile_accuracy(
                np.broadcast_to(train_labels.reshape(len(train), -1), truth.shape), truth
            )
            log(
                "Training tile labels vs ground truth: "
                f"{accuracy['inherited']:.3f} inherited -> {accuracy['corrected']:.3f} corrected."
            )
        log(f"Training {type(classifier).__name__} on {len(train) * n_tiles} tiles ...")
        classifier.fit(bags[train], train_labels, groups=patients[train])
        model = Pipeline([("tiles", tiler), ("clf", classifier)])
        reports, rate, curves = _score_bags(
            classifier,
            bags[test],
            y[test],
            patients[test],
            None if tile_truth is None else tile_truth[test],
        )
    else:
        history, table, accuracy = [], "", {}
        tile_labels = np.repeat(y, n_tiles).reshape(n_images, n_tiles)
        if self_learning_rounds > 0:
            log(
                f"Self-learning on all images (the paper's protocol): {self_learning_rounds} rounds ..."
            )
            relabeler = _relabel(
                bags,
                y,
                patients,
                rounds=self_learning_rounds,
                proposer=proposer,
                random_state=random_state,
                verbose=max(verbose - 1, 0),
            )
            tile_labels = relabeler.tile_labels_
            history, table = relabeler.history_, relabeler.format_history(tile_truth)
            log(table)
        tiles, tile_y, groups = flatten_bags(bags, tile_labels)
        train, test = random_tile_split_indices(
            n_images, n_tiles, test_size=test_size, random_state=random_state
        )
        log(
            f"Random split of tiles (LEAKY, the paper's protocol): {len(train)} training and "
            f"{len(test)} test tiles; {len(np.intersect1d(groups[train], groups[test]))} images "
            "have tiles on both sides."
        )
        classifier.fit(tiles[train], tile_y[train])
        model = Pipeline([("tiles", tiler), ("clf", classifier)])
        positive = _positive_column(classifier)
        proba = classifier.predict_proba(tiles[test])
        pred = np.asarray(classifier.classes_)[proba.argmax(axis=1)]
        reports = {
            "tile (corrected labels)": binary_report(
                tile_y[test], pred, proba[:, positive], zero_division=ZERO_DIVISION
            )
        }
        curves = {"tile (corrected labels)": (tile_y[test], proba[:, positive])}
        if tile_truth is not None:
            truth = tile_truth.reshape(-1)[test]
            reports["tile"] = binary_report(
                truth, pred, proba[:, positive], zero_division=ZERO_DIVISION
            )
            curves["tile"] = (truth, proba[:, positive])
        rate = None
    info = {
        "n_images": int(n_images),
        "n_tiles_per_image": int(n_tiles),
        "tile_shape": list(bags.shape[2:4]),
        "n_train": len(train),
        "n_test": len(test),
        "split_unit": "image" if protocol == "patient" else "tile",
        "classifier": type(classifier).__name__,
        "classifier_params": {
            k: v for k, v in classifier.get_params(deep=False).items() if _is_plain(v)
        },
        "self_learning_rounds": int(self_learning_rounds),
        "relabel_with": relabel_with,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return ExperimentResult(
        protocol=protocol,
        reports=reports,
        patient_score=rate,
        history=history,
        history_table=table,
        tile_label_accuracy=accuracy,
        model=model,
        curves=curves,
        info=info,
    )


def _score_bags(
    classifier: Any, bags: np.ndarray, y: np.ndarray, patients: Any, tile_truth: Any
) -> tuple[dict[str, BinaryReport], float | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    positive = _positive_column(classifier)
    classes = np.asarray(classifier.classes_)
    tile_proba = classifier.predict_proba_tiles(bags)
    image_proba = classifier.predict_proba(bags)
    image_pred = classes[image_proba.argmax(axis=1)]
    reports = {
        "image": binary_report(y, image_pred, image_proba[:, positive], zero_division=ZERO_DIVISION)
    }
    curves = {"image": (y, image_proba[:, positive])}
    if tile_truth is not None:
        flat = tile_proba.reshape(-1, len(classes))
        truth = np.asarray(tile_truth).reshape(-1)
        reports["tile"] = binary_report(
            truth, classes[flat.argmax(axis=1)], flat[:, positive], zero_division=ZERO_DIVISION
        )
        curves["tile"] = (truth, flat[:, positive])
    rate = None if patients is None else patient_score(y, image_pred, patients)
    return reports, rate, curves


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, tuple, list))


def _as_named_labels(y: Any) -> np.ndarray:
    """Map 0/1 labels to 'benign'/'malignant' so that reports and predictions read well."""
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        values = set(np.unique(y).tolist())
        if not values <= {0, 1}:
            raise ValueError(
                f"Integer labels must be 0 (benign) / 1 (malignant), got {sorted(values)}."
            )
        return np.where(y == 1, POSITIVE, "benign")
    y = y.astype(str)
    unknown = set(np.unique(y).tolist()) - {"benign", POSITIVE}
    if unknown:
        raise ValueError(f"Labels must be 'benign'/'malignant' (or 0/1), got {sorted(unknown)}.")
    return y


def _logger(verbose: int):
    def log(message: str) -> None:
        if verbose:
            print(message, flush=True)

    return log
