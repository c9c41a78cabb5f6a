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

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline

from .class_roles import resolve_class_roles, resolve_negative_classes, roles_of
from .exceptions import DataError, TrainingInterrupted, UserError
from .metrics import binary_report, multiclass_report, patient_score
from .reporting import format_self_learning_history, prediction_rows, utc_now, write_outputs
from .splits import PROTOCOLS, patient_split_indices, random_tile_split_indices
from .tiling import SubImageTiler, flatten_bags

__all__ = [
    "CrossValidationResult",
    "ExperimentResult",
    "classifier_defaults",
    "default_aggregation",
    "make_baseline",
    "make_classifier",
    "make_relabeling_proposer",
    "run_cross_validation",
    "run_experiment",
    "score_images",
]

MODELS = ("hybrid", "cnn")
RELABELERS = ("features", "model")
#: Reports give 0 for a metric with no positive prediction (a small or failed model) instead
#: of printing a warning per metric between the progress lines.
ZERO_DIVISION = 0.0


def make_classifier(model: str = "hybrid", **params: Any) -> Any:
    """Build a ``HybridCNNLSTMClassifier`` (``model="hybrid"``) or a ``CNNClassifier``.

    Parameters
    ----------
    model : {"hybrid", "cnn"}, default="hybrid"
    **params
        Estimator parameters (``backbone``, ``weights``, ``max_epochs``, ...). Each class gets
        only the parameters it has (its ``get_params`` names), so options of one model
        (``fusion``, ``lstm_hidden_size`` of the hybrid) can be passed to either; skorch's
        ``name__param`` parameters (``callbacks__...``, ``optimizer__...``) always pass.
    """
    from .estimators import CNNClassifier, HybridCNNLSTMClassifier

    if model not in MODELS:
        raise UserError(f"model must be one of {MODELS}, got {model!r}.")
    cls = CNNClassifier if model == "cnn" else HybridCNNLSTMClassifier
    # From the class's signature, not a hand-written list: a parameter added to one model
    # later is passed to it and kept from the other without touching this function.
    accepted = set(classifier_defaults(model))
    return cls(**{k: v for k, v in params.items() if k in accepted or "__" in k})


def classifier_defaults(model: str = "hybrid") -> dict[str, Any]:
    """The constructor parameters of a model class and their defaults.

    The command line takes its defaults from here, so that ``skhybrid train`` and the Python
    API cannot drift apart.

    Parameters
    ----------
    model : {"hybrid", "cnn"}, default="hybrid"

    Returns
    -------
    dict of str to default
    """
    import inspect

    from .estimators import CNNClassifier, HybridCNNLSTMClassifier

    if model not in MODELS:
        raise UserError(f"model must be one of {MODELS}, got {model!r}.")
    cls = CNNClassifier if model == "cnn" else HybridCNNLSTMClassifier
    return {
        name: p.default
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


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
    BreakHis a strong baseline by itself (ROC AUC about 0.91 patient-wise, docs/design.md).
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


class _WritesOutputFolder:
    """``save``, shared by the results of a run and of a cross-validation: both have
    ``to_dict()``, ``curves``, ``history_table``, ``model`` and ``predictions``."""

    def save(
        self,
        out_dir: str | os.PathLike[str],
        *,
        save_model: bool = True,
        keep_optimizer_state: bool = False,
        provenance: Mapping[str, Any] | None = None,
        skipped: list[dict[str, str]] | None = None,
    ) -> list[Path]:
        """Write ``report.json``, ``predictions.csv``, ``patients.csv``, the history table, ROC /
        precision-recall PNGs and ``model.joblib`` (for a cross-validation ``predictions.csv``
        holds the out-of-fold predictions).

        The one writer of every command's output folder
        (:func:`skhybrid.reporting.write_outputs`). The model is written for prediction,
        without the optimizer's state (a third of the size), unless ``keep_optimizer_state``
        (see :func:`skhybrid.save_model`). Plots need
        matplotlib (``pip install 'skhybrid[plots]'``); without it they are skipped with a
        warning and the rest is still written. ``provenance`` entries (the data folder, the
        command's start time, ...) join the versions and the command line that every
        ``report.json`` records. ``skipped`` lists the input files left out (``{"file",
        "reason"}`` each), written as ``report.json``'s ``"skipped"``.
        """
        return write_outputs(
            out_dir,
            {**self.to_dict(), "provenance": dict(provenance or {})},
            curves=self.curves,
            history_table=self.history_table,
            model=self.model if save_model else None,
            keep_optimizer_state=keep_optimizer_state,
            predictions=self.predictions,
            skipped=skipped,
        )


@dataclass
class ExperimentResult(_WritesOutputFolder):
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
        The fitted ``SubImageTiler`` + classifier (or, from
        :func:`skhybrid.recipe_experiment.run_recipe_experiment`, the fitted recipe), ready
        for :func:`skhybrid.save_model`.
    curves : dict
        ``{level: (y_true, positive_scores)}`` for ROC / precision-recall plots.
    info : dict
        Sizes, timings and settings.
    predictions : list of dict
        One row per test image (:func:`skhybrid.reporting.prediction_rows`), written as
        ``predictions.csv`` and ``patients.csv``; empty under the random-tile protocol,
        which tests tiles, not images.
    """

    protocol: str
    reports: dict[str, Any]  # BinaryReport, or MulticlassReport with k > 2 classes
    patient_score: float | None
    history: list[dict[str, Any]]
    history_table: str
    tile_label_accuracy: dict[str, float]
    model: Pipeline
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    info: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)

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


def _positive_column(estimator: Any) -> int:
    return roles_of(estimator).positive_index


def score_images(
    model: Any,
    X: Any,
    y: Any,
    patients: Any = None,
    *,
    tile_truth: Any = None,
    return_predictions: bool = False,
    image_info: Mapping[str, Any] | None = None,
) -> tuple:
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
    return_predictions : bool, default=False
        Also return one row per image (:func:`skhybrid.reporting.prediction_rows`), for
        ``predictions.csv``.
    image_info : mapping of str to array-like, optional
        Per-image columns of those rows (``file``, ``magnification``, ...).

    Returns
    -------
    reports, patient_rate, curves
        And ``predictions`` (list of dict) with ``return_predictions=True``.
    """
    tiler, classifier = model.steps[0][1], model.steps[-1][1]
    bags = tiler.transform(X)
    if len(model.steps) > 2:
        bags = Pipeline(model.steps[1:-1]).transform(bags)
    y = np.asarray(y)
    *scores, (image_proba, tile_proba) = _score_bags_full(classifier, bags, y, patients, tile_truth)
    if not return_predictions:
        return tuple(scores)
    rows = prediction_rows(
        classifier.classes_,
        y,
        image_proba,
        tile_proba=tile_proba,
        columns=_image_columns(len(y), patients, image_info),
    )
    return (*scores, rows)


def _image_columns(
    n_images: int, patients: Any = None, image_info: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """The identifying columns of ``predictions.csv``: image index, ``image_info``, patient.

    Parameters
    ----------
    n_images : int
    patients : array-like of shape (n_images,), optional
    image_info : mapping of str to array-like of shape (n_images,), optional
        More per-image columns, e.g. ``{"file": ..., "magnification": ...}``.
    """
    columns = {"image": np.arange(n_images)}
    for name, values in (image_info or {}).items():
        values = np.asarray(values)
        if len(values) != n_images:
            raise UserError(f"image_info[{name!r}] has {len(values)} values for {n_images} images.")
        columns[name] = values
    if patients is not None:
        columns["patient"] = np.asarray(patients)
    return columns


def _runtime(classifier: Any) -> dict[str, Any]:
    """The device and precision a fitted classifier actually used (not ``"auto"``)."""
    return {
        "device": getattr(classifier, "device_", None),
        "precision": getattr(classifier, "precision_", None),
    }


def _tile_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels).reshape(-1) == np.asarray(truth).reshape(-1)))


def _patients_per_class(y: np.ndarray, groups: np.ndarray) -> list[int]:
    """Number of distinct patients with images of each class."""
    return [len(np.unique(groups[y == label])) for label in np.unique(y)]


@dataclass
class _Relabeling:
    """What the self-learning step hands to a protocol: tile labels and their history."""

    tile_labels: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    relabeler: Any = None  # the fitted SelfLearningRelabeler, when there was one


def _self_learning_step(
    bags: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    rounds: int,
    proposer: Any,
    tile_truth: Any,
    random_state: Any,
    verbose: int,
    log: Any,
) -> _Relabeling:
    """Correct the tile labels of ``bags`` (both protocols call this, on their own images).

    With ``rounds=0`` every tile keeps its image's label.
    """
    n_images, n_tiles = bags.shape[:2]
    if rounds == 0:
        return _Relabeling(np.repeat(y, n_tiles).reshape(n_images, n_tiles))
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
    ).fit(bags, y, groups=groups)
    table = format_self_learning_history(relabeler, tile_truth)
    log(table)
    return _Relabeling(relabeler.tile_labels_, relabeler.history_, table, relabeler)


def _fit(classifier: Any, X: Any, y: Any, groups: Any) -> Any:
    """The final training of a protocol, without a checkpoint."""
    return classifier.fit(X, y, groups=groups)


def _resumable(relabel: Any, checkpoint: Path, log: Any) -> tuple[Any, Any]:
    """``relabel`` and a final ``fit`` that keep their state in ``checkpoint`` and reuse it.

    The self-learning result is saved there once the rounds are done
    (:func:`~skhybrid.estimators.save_self_learning_state`) and read back by a resumed run,
    which then skips the rounds; the final training writes a checkpoint every epoch and a
    resumed run continues it (:func:`~skhybrid.estimators.fit_resumable`).
    """
    from .estimators import fit_resumable, load_self_learning_state, save_self_learning_state
    from .self_learning import SelfLearningRelabeler

    def relabel_resumable(bags_: Any, y_: Any, groups: Any, truth: Any, where: str) -> Any:
        state = load_self_learning_state(checkpoint)
        if state is None:
            relabeling = relabel(bags_, y_, groups, truth, where)
            if relabeling.relabeler is not None:
                save_self_learning_state(checkpoint, relabeling.relabeler)
            return relabeling
        if state["tile_labels"].shape != bags_.shape[:2]:
            raise DataError(
                f"The self-learning state in {checkpoint} is for {state['tile_labels'].shape} "
                f"tiles, this run's training images have {bags_.shape[:2]}: the data changed "
                "since the run was interrupted; start a new run instead of resuming."
            )
        # A fitted relabeler's result, as the rounds left it (for the report's table).
        restored = SelfLearningRelabeler(None)
        restored.classes_ = np.unique(y_)
        restored.tile_labels_ = state["tile_labels"]
        restored.tile_label_history_ = state["tile_label_history"]
        restored.history_ = state["history"]
        restored.termination_condition_ = state["termination_condition"]
        table = format_self_learning_history(restored, truth)
        log(f"Self-learning{where}: the {len(state['history']) - 1} round(s) saved in "
            f"{checkpoint} are reused.\n{table}")  # fmt: skip
        return _Relabeling(restored.tile_labels_, restored.history_, table, restored)

    def fit(classifier: Any, X: Any, y: Any, groups: Any) -> Any:
        return fit_resumable(classifier, checkpoint, X, y, groups)

    return relabel_resumable, fit


@dataclass
class _ProtocolResult:
    reports: dict[str, Any]
    patient_score: float | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    relabeling: _Relabeling
    tile_label_accuracy: dict[str, float]
    n_train: int
    n_test: int
    classifier: Any = None  # the fitted one (a resumed fit returns a new object)
    test_index: np.ndarray | None = None
    test_proba: tuple[np.ndarray, np.ndarray] | None = None  # image (n, k), tiles (n, T, k)


def check_patient_folds(y: np.ndarray, patients: np.ndarray, n_splits: int) -> None:
    """Refuse ``n_splits`` patient-wise folds that some class has too few patients for."""
    fewest = min(_patients_per_class(y, patients))
    if fewest < n_splits:
        raise DataError(
            f"{n_splits} patient-wise folds need at least {n_splits} patients of each class; "
            f"the smaller class has {fewest}."
        )


def patient_split(
    y: np.ndarray, patients: np.ndarray, *, test_size: float, random_state: Any, log: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out split of every single-split run (tiles or recipe), said in one line.

    :func:`~skhybrid.splits.patient_split_indices`, with too few patients per class (the
    user's data, not a bug) raised as a :class:`~skhybrid.exceptions.DataError`.
    """
    try:
        train, test = patient_split_indices(
            y, patients, test_size=test_size, random_state=random_state
        )
    except ValueError as exc:
        raise DataError(f"Cannot split these images patient-wise: {exc}") from exc
    log(
        f"Patient-wise split: {len(train)} training images ({len(np.unique(patients[train]))} "
        f"patients), {len(test)} test images ({len(np.unique(patients[test]))} patients)."
    )
    return train, test


def _run_patient_protocol(
    bags: np.ndarray,
    y: np.ndarray,
    patients: np.ndarray,
    tile_truth: np.ndarray | None,
    classifier: Any,
    relabel: Any,
    *,
    fit: Any = _fit,
    test_size: float,
    random_state: Any,
    log: Any,
) -> _ProtocolResult:
    """Split images by patient, relabel and train on the training patients, score the rest."""
    n_tiles = bags.shape[1]
    train, test = patient_split(
        y, patients, test_size=test_size, random_state=random_state, log=log
    )
    truth = None if tile_truth is None else tile_truth[train]
    relabeling = relabel(bags[train], y[train], patients[train], truth, "")
    accuracy: dict[str, float] = {}
    if truth is not None:
        accuracy["inherited"] = _tile_accuracy(np.repeat(y[train], n_tiles), truth)
        accuracy["corrected"] = _tile_accuracy(relabeling.tile_labels, truth)
        log(
            "Training tile labels vs ground truth: "
            f"{accuracy['inherited']:.3f} inherited -> {accuracy['corrected']:.3f} corrected."
        )
    log(f"Training {type(classifier).__name__} on {len(train) * n_tiles} tiles ...")
    classifier = fit(classifier, bags[train], relabeling.tile_labels, patients[train])
    reports, rate, curves, proba = _score_bags_full(
        classifier,
        bags[test],
        y[test],
        patients[test],
        None if tile_truth is None else tile_truth[test],
    )
    return _ProtocolResult(
        reports, rate, curves, relabeling, accuracy, len(train), len(test), classifier, test, proba
    )


def _run_paper_protocol(
    bags: np.ndarray,
    y: np.ndarray,
    patients: np.ndarray,
    tile_truth: np.ndarray | None,
    classifier: Any,
    relabel: Any,
    *,
    fit: Any = _fit,
    test_size: float,
    random_state: Any,
    log: Any,
) -> _ProtocolResult:
    """The paper's protocol: relabel all images, split *tiles* at random (leaky), score tiles."""
    n_images, n_tiles = bags.shape[:2]
    relabeling = relabel(bags, y, patients, tile_truth, " on all images (the paper's protocol)")
    tiles, tile_y, groups = flatten_bags(bags, relabeling.tile_labels)
    train, test = random_tile_split_indices(
        n_images, n_tiles, test_size=test_size, random_state=random_state
    )
    log(
        f"Random split of tiles (LEAKY, the paper's protocol): {len(train)} training and "
        f"{len(test)} test tiles; {len(np.intersect1d(groups[train], groups[test]))} images "
        "have tiles on both sides."
    )
    classifier = fit(classifier, tiles[train], tile_y[train], None)
    proba = classifier.predict_proba(tiles[test])
    levels = {"tile (corrected labels)": (tile_y[test], proba)}
    if tile_truth is not None:
        levels["tile"] = (tile_truth.reshape(-1)[test], proba)
    reports, curves = _level_reports(classifier, levels)
    return _ProtocolResult(reports, None, curves, relabeling, {}, len(train), len(test), classifier)


_PROTOCOL_RUNNERS = {"patient": _run_patient_protocol, "random-tile": _run_paper_protocol}
#: The test share of each protocol when ``run_experiment(test_size=None)``: the paper tests on
#: 20 % of its tiles; the patient-wise split keeps its quarter of each class's patients.
DEFAULT_TEST_SIZE = {"patient": 0.25, "random-tile": 0.2}


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
    aggregation: str | None = None,
    tile_truth: Any = None,
    test_size: float | None = None,
    random_state: Any = 0,
    verbose: int = 1,
    image_info: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> ExperimentResult:
    """Run the paper's method end to end under an evaluation protocol.

    Parameters
    ----------
    X : images
        uint8 array ``(n, H, W, 3)`` or a list of arrays / PIL images / file paths.
    y : array-like of shape (n,)
        Image labels of two classes whose roles :mod:`skhybrid.class_roles` can tell
        (``'benign'``/``'malignant'``, ``'normal'``/``'tumor'``, ...); numbers (0/1) are
        named ``'benign'``/``'malignant'`` by that rule.
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
    aggregation : {"mean", "max", "vote", "mil"} or None, default=None
        The classifier's tile-to-image rule. ``None``: :func:`default_aggregation` of
        ``self_learning_rounds`` (``"mil"`` after self-learning, ``"mean"`` without), in
        place of the classifier's own; pass ``classifier.aggregation`` to keep that.
    tile_truth : array-like of shape (n, T), optional
        Ground-truth tile labels (synthetic data), for tile-level scores.
    test_size : float or None, default=None
        Share held out: of each class's patients (``"patient"``) or of the tiles
        (``"random-tile"``). ``None`` takes :data:`DEFAULT_TEST_SIZE` of the protocol: 0.25
        patient-wise, 0.2 for the paper's protocol (its Tables 7-8 total 20 % of the tiles
        of its Table 3, e.g. 3591 of 17955 at 40X).
    random_state : int or None, default=0
    verbose : int, default=1
    image_info : mapping of str to array-like, optional
        Per-image columns for ``predictions.csv`` (e.g. ``{"file": ..., "magnification":
        ...}``); the image index and the patient are always written.
    checkpoint : str or path-like, optional
        Folder where the run keeps what a resume needs: the self-learning result, once its
        rounds are done, and a checkpoint of the final training at the end of every epoch
        (:func:`~skhybrid.estimators.fit_resumable`). When it already holds them (a run that
        was killed or interrupted), the same call with the same data continues: the rounds
        are not redone and training resumes where it stopped, ending (in fp32, seeded) with
        the model an uninterrupted run would have. ``skhybrid train`` passes
        ``OUT/checkpoint``. One folder per run.

    Returns
    -------
    ExperimentResult

    Raises
    ------
    UserError
        (a ``ValueError``) For an unknown ``protocol`` or ``relabel_with``.
    DataError
        (a ``ValueError``) For labels without two recognisable classes, or images that
        cannot be split patient-wise (too few patients per class).
    TrainingInterrupted
        (a ``KeyboardInterrupt``) When the final training was interrupted with a
        ``checkpoint``: its ``estimator`` is the pipeline of the tiler and the classifier with
        the best weights so far; the checkpoint is ready for a resume.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    _check_method(self_learning_rounds, relabel_with)
    y, tile_truth = _as_named_labels(y, tile_truth)
    patients = np.asarray(patients)
    tiler = clone(tiler) if tiler is not None else SubImageTiler(tile_size=(224, 224))
    classifier = clone(classifier)
    if "aggregation" in classifier.get_params(deep=False):
        # Decided here, once, for every caller (the command line passes None too).
        classifier.set_params(aggregation=aggregation or default_aggregation(self_learning_rounds))
    if classifier.get_params(deep=False).get("classes", "absent") is None:
        # Every class of the data set, even one whose patients all land in the test set (a
        # subtype with few patients): the model's columns and the reports then cover them all.
        classifier.set_params(classes=np.unique(y))
    log = _logger(verbose)
    started, started_utc = time.perf_counter(), utc_now()

    log(f"Cutting {len(y)} images into tiles ...")
    bags = tiler.fit_transform(X)
    n_images, n_tiles = bags.shape[:2]
    relabel = _relabeler(
        classifier, self_learning_rounds, relabel_with, random_state=random_state, verbose=verbose
    )
    fit = _fit
    if checkpoint is not None:
        relabel, fit = _resumable(relabel, Path(checkpoint), log)
    if test_size is None:
        test_size = DEFAULT_TEST_SIZE[protocol]
    try:
        outcome = _PROTOCOL_RUNNERS[protocol](
            bags,
            y,
            patients,
            tile_truth,
            classifier,
            relabel,
            fit=fit,
            test_size=test_size,
            random_state=random_state,
            log=log,
        )
    except TrainingInterrupted as stop:
        stop.estimator = Pipeline([("tiles", tiler), ("clf", stop.estimator)])
        raise
    classifier = outcome.classifier
    info = {
        "n_images": int(n_images),
        "n_tiles_per_image": int(n_tiles),
        "tile_shape": list(bags.shape[2:4]),
        "n_train": outcome.n_train,
        "n_test": outcome.n_test,
        "split_unit": "image" if protocol == "patient" else "tile",
        "classifier": type(classifier).__name__,
        "classifier_params": {
            k: v for k, v in classifier.get_params(deep=False).items() if _is_plain(v)
        },
        "self_learning_rounds": int(self_learning_rounds),
        "relabel_with": relabel_with,
        "n_patients": len(np.unique(patients)),
        "n_tiles": int(n_images * n_tiles),
        "test_size": test_size,
        "random_state": random_state,
        **_runtime(classifier),
        "started_utc": started_utc,
        "seconds": round(time.perf_counter() - started, 1),
    }
    predictions = []
    if outcome.test_proba is not None:
        test = outcome.test_index
        columns = _image_columns(n_images, patients, image_info)
        predictions = prediction_rows(
            classifier.classes_,
            y[test],
            outcome.test_proba[0],
            tile_proba=outcome.test_proba[1],
            columns={name: values[test] for name, values in columns.items()},
        )
    return ExperimentResult(
        protocol=protocol,
        reports=outcome.reports,
        patient_score=outcome.patient_score,
        history=outcome.relabeling.history,
        history_table=outcome.relabeling.table,
        tile_label_accuracy=outcome.tile_label_accuracy,
        model=Pipeline([("tiles", tiler), ("clf", classifier)]),
        curves=outcome.curves,
        info=info,
        predictions=predictions,
    )


def _check_method(self_learning_rounds: Any, relabel_with: str) -> None:
    if relabel_with not in RELABELERS:
        raise UserError(f"relabel_with must be one of {RELABELERS}, got {relabel_with!r}.")
    if not (isinstance(self_learning_rounds, (int, np.integer)) and self_learning_rounds >= 0):
        raise UserError(f"self_learning_rounds must be an int >= 0, got {self_learning_rounds!r}.")


def _relabeler(
    classifier: Any, rounds: int, relabel_with: str, *, random_state: Any, verbose: int
) -> Any:
    """``relabel(bags, y, groups, tile_truth, where)``: self-learning on the images given only."""
    log = _logger(verbose)
    proposer = make_relabeling_proposer(random_state) if relabel_with == "features" else classifier

    def relabel(bags_: Any, y_: Any, groups: Any, truth: Any, where: str) -> _Relabeling:
        if rounds > 0:
            log(f"Self-learning{where}: up to {rounds} rounds of tile relabeling ...")
        return _self_learning_step(
            bags_,
            y_,
            groups,
            rounds=rounds,
            proposer=proposer,
            tile_truth=truth,
            random_state=random_state,
            verbose=max(verbose - 1, 0),
            log=log,
        )

    return relabel


def _mean_over_tiles(features: np.ndarray) -> np.ndarray:
    """Image features as the mean of its tiles' (module level, so the Pipeline pickles)."""
    return np.asarray(features).mean(axis=1)


def make_baseline(random_state: Any = None) -> Pipeline:
    """The colour/texture baseline on bags: tile features averaged per image, logistic regression.

    The cheap model a deep one has to beat on the same folds (docs/design.md, "Cheap baselines
    are strong"); ``class_weight="balanced"`` as in docs/evaluation.md, since BreakHis holds
    twice as many malignant images as benign ones.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from .features import ColorTextureFeatures

    return Pipeline(
        [
            ("features", ColorTextureFeatures()),
            ("pool", FunctionTransformer(_mean_over_tiles)),
            ("scale", StandardScaler()),
            (
                "logistic",
                LogisticRegression(
                    class_weight="balanced", max_iter=1000, random_state=random_state
                ),
            ),
        ]
    )


class _ReplayFolds(ClassifierMixin, BaseEstimator):
    """Gives :func:`~skhybrid.evaluation.cross_validate_patients` predictions already made.

    :func:`run_cross_validation` fits each fold itself, because it needs more of the fold
    models than ``cross_validate_patients`` keeps (tile probabilities, the device used); this
    stand-in, fitted and asked on image indices, hands back each fold's stored probabilities,
    so that the per-fold metrics and the patient-bootstrap intervals come from the one
    implementation in :mod:`skhybrid.evaluation`.

    Parameters
    ----------
    outputs : dict
        ``{(train indices bytes, test indices bytes): probabilities (n_test, n_classes)}``,
        columns in the order of ``np.unique(y)``.
    """

    def __init__(self, outputs: dict | None = None) -> None:
        self.outputs = outputs

    def fit(self, X: Any, y: Any) -> _ReplayFolds:
        self.train_key_ = _index_key(X)
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.outputs[(self.train_key_, _index_key(X))]

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _index_key(index: Any) -> bytes:
    return np.asarray(index, dtype=np.intp).reshape(-1).tobytes()


class _FixedSplits:
    """A splitter yielding splits drawn once (so both passes over the folds see the same)."""

    def __init__(self, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.splits = splits

    def split(self, X: Any = None, y: Any = None, groups: Any = None) -> Any:
        yield from self.splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return len(self.splits)


@dataclass
class CrossValidationResult(_WritesOutputFolder):
    """What :func:`run_cross_validation` measured and fitted.

    Attributes
    ----------
    cv : PatientCVResult
        Per-fold metrics, pooled out-of-fold predictions and patient-bootstrap intervals (and
        the baseline's and the paired differences with a baseline).
    info : dict
        Sizes, folds, repeats, seeds, device, precision, timings and settings.
    predictions : list of dict
        One row per image and repeat, the out-of-fold prediction with its ``fold`` and
        ``repeat`` (:func:`skhybrid.reporting.prediction_rows`).
    model : Pipeline or None
        ``SubImageTiler`` + classifier refitted on all images (``refit=True``).
    history : list of dict
        The final model's self-learning history (empty without self-learning or refit).
    history_table : str
        That history as a Markdown table.
    curves : dict
        ``{"image (out-of-fold, repeat 1)": (y_true, positive_scores)}`` for ROC / PR plots.
    """

    cv: Any
    info: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)
    model: Pipeline | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    history_table: str = ""
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    #: Keys of ``PatientCVResult.to_dict()`` kept in the report; the out-of-fold arrays are in
    #: ``predictions.csv`` instead.
    _CV_KEYS = (
        "pos_label",
        "confidence",
        "n_resamples",
        "n_repeats",
        "intervals",
        "folds",
        "baseline_intervals",
        "baseline_folds",
        "differences",
    )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (no model, no curves)."""
        cv = self.cv.to_dict()
        return {
            "protocol": "patient-cv",
            "leaky": False,
            "cross_validation": {key: cv[key] for key in self._CV_KEYS},
            "self_learning_history": self.history,
            "info": self.info,
        }

    def format(self, digits: int = 3) -> str:
        """Every metric as ``estimate [low, high]`` (Markdown), see ``PatientCVResult.format``."""
        return self.cv.format(digits)


def run_cross_validation(
    X: Any,
    y: Any,
    patients: Any,
    *,
    classifier: Any,
    tiler: SubImageTiler | None = None,
    n_splits: int = 4,
    n_repeats: int = 1,
    self_learning_rounds: int = 4,
    relabel_with: str = "features",
    aggregation: str | None = None,
    baseline: Any = None,
    refit: bool = True,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    random_state: Any = 0,
    verbose: int = 1,
    image_info: Mapping[str, Any] | None = None,
) -> CrossValidationResult:
    """Repeated patient-wise cross-validation of the whole method, with patient-bootstrap intervals.

    Each fold of ``RepeatedStratifiedGroupKFold(n_splits, n_repeats)`` (grouped by patient)
    runs what :func:`run_experiment` runs on its training patients: self-learning on the
    fold's training images only, then the classifier on the corrected tile labels; it then
    predicts the fold's test patients. Metrics per fold and patient-bootstrap intervals of
    the pooled out-of-fold predictions come from
    :func:`skhybrid.evaluation.cross_validate_patients`. Tiling happens once, before the
    folds: it is stateless, so it cannot leak.

    Parameters
    ----------
    X, y, patients, classifier, tiler, self_learning_rounds, relabel_with, aggregation
        As in :func:`run_experiment`.
    n_splits : int, default=4
        Folds per repeat; every class needs at least this many patients.
    n_repeats : int, default=1
        Repeats of the folds, each with its own shuffle.
    baseline : estimator on bags, default=None
        Run on the same folds (e.g. :func:`make_baseline`); the report then holds its
        intervals and the paired difference model - baseline.
    refit : bool, default=True
        Fit the final model on all images afterwards (``result.model``).
    n_resamples : int, default=1000
        Patient-bootstrap resamples.
    confidence : float, default=0.95
    random_state : int or None, default=0
        Seeds the folds, the relabeler, the bootstrap (and not the classifier: pass its own
        ``random_state``).
    verbose : int, default=1
    image_info : mapping of str to array-like, optional
        Per-image columns for ``predictions.csv``, as in :func:`run_experiment`.

    Returns
    -------
    CrossValidationResult

    Raises
    ------
    UserError
        For an unknown ``relabel_with`` or bad ``self_learning_rounds``.
    DataError
        For labels without two recognisable classes, or a class with fewer patients than
        ``n_splits``.
    """
    from .evaluation import cross_validate_patients
    from .model_selection import RepeatedStratifiedGroupKFold

    _check_method(self_learning_rounds, relabel_with)
    y, _ = _as_named_labels(y)
    patients = np.asarray(patients)
    check_patient_folds(y, patients, n_splits)
    tiler = clone(tiler) if tiler is not None else SubImageTiler(tile_size=(224, 224))
    classifier = clone(classifier)
    if "aggregation" in classifier.get_params(deep=False):
        classifier.set_params(aggregation=aggregation or default_aggregation(self_learning_rounds))
    log = _logger(verbose)
    started, started_utc = time.perf_counter(), utc_now()
    relabel = _relabeler(
        classifier, self_learning_rounds, relabel_with, random_state=random_state, verbose=verbose
    )

    log(f"Cutting {len(y)} images into tiles ...")
    bags = tiler.fit_transform(X)
    n_images, n_tiles = bags.shape[:2]
    splitter = RepeatedStratifiedGroupKFold(
        n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
    )
    splits = list(splitter.split(np.zeros(n_images), y, patients))
    classes = np.unique(y)
    outputs: dict[str, dict] = {"model": {}, "baseline": {}}
    tiles: dict[tuple[bytes, bytes], np.ndarray] = {}
    runtime: list[dict[str, Any]] = []
    fold_seconds: list[float] = []
    for fold, (train, test) in enumerate(splits):
        key = (_index_key(train), _index_key(test))
        if key in tiles:
            # The same fold again in a later repeat (StratifiedGroupKFold is greedy): the
            # same training images and seeds give the same model, so it is not fitted twice.
            fold_seconds.append(0.0)
            continue
        fold_start = time.perf_counter()
        log(
            f"Fold {fold + 1}/{len(splits)}: {len(train)} training images "
            f"({len(np.unique(patients[train]))} patients), {len(test)} test images "
            f"({len(np.unique(patients[test]))} patients)."
        )
        model = clone(classifier)
        relabeling = relabel(bags[train], y[train], patients[train], None, f" (fold {fold + 1})")
        model.fit(bags[train], relabeling.tile_labels, groups=patients[train])
        order = [list(model.classes_).index(c) for c in classes]
        outputs["model"][key] = model.predict_proba(bags[test])[:, order]
        tiles[key] = model.predict_proba_tiles(bags[test])[..., order]
        runtime.append(_runtime(model))
        if baseline is not None:
            reference = clone(baseline).fit(bags[train], y[train])
            order = [list(reference.classes_).index(c) for c in classes]
            outputs["baseline"][key] = reference.predict_proba(bags[test])[:, order]
        fold_seconds.append(round(time.perf_counter() - fold_start, 1))

    index = np.arange(n_images, dtype=np.intp)[:, None]
    cv = cross_validate_patients(
        _ReplayFolds(outputs["model"]),
        index,
        y,
        patients,
        cv=_FixedSplits(splits),
        baseline=None if baseline is None else _ReplayFolds(outputs["baseline"]),
        n_resamples=n_resamples,
        confidence=confidence,
        random_state=random_state,
        verbose=0,
    )
    columns = _image_columns(n_images, patients, image_info)
    predictions = []
    for (train, test), fold_info in zip(splits, cv.folds):
        key = (_index_key(train), _index_key(test))
        predictions += prediction_rows(
            classes,
            y[test],
            outputs["model"][key],
            tile_proba=tiles[key],
            columns={
                "repeat": np.full(len(test), fold_info["repeat"]),
                "fold": np.full(len(test), fold_info["fold"]),
                **{name: values[test] for name, values in columns.items()},
            },
        )
    predictions.sort(key=lambda row: (row["repeat"], row["image"]))

    result = CrossValidationResult(cv=cv, info={}, predictions=predictions)
    result.curves = {"image (out-of-fold, repeat 1)": (y, cv.oof_proba[0])}
    if refit:
        log(f"Fitting the final model on all {n_images} images ...")
        relabeling = relabel(bags, y, patients, None, " on all images (final model)")
        classifier.fit(bags, relabeling.tile_labels, groups=patients)
        result.model = Pipeline([("tiles", tiler), ("clf", classifier)])
        result.history, result.history_table = relabeling.history, relabeling.table
        runtime.append(_runtime(classifier))
    result.info = {
        "n_images": int(n_images),
        "n_patients": len(np.unique(patients)),
        "n_tiles_per_image": int(n_tiles),
        "n_tiles": int(n_images * n_tiles),
        "tile_shape": list(bags.shape[2:4]),
        "split_unit": "patient",
        "n_splits": int(n_splits),
        "n_repeats": int(n_repeats),
        "n_folds_fitted": len(tiles),
        "random_state": random_state,
        "classifier": type(classifier).__name__,
        "classifier_params": {
            k: v for k, v in classifier.get_params(deep=False).items() if _is_plain(v)
        },
        "baseline": None if baseline is None else _describe(baseline),
        "self_learning_rounds": int(self_learning_rounds),
        "relabel_with": relabel_with,
        "refit": bool(refit),
        # What the fitted models used, the final one's when refitted (all folds run alike).
        **runtime[-1],
        "devices_used": sorted({str(r["device"]) for r in runtime}),
        "started_utc": started_utc,
        "fold_seconds": fold_seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result


def _describe(estimator: Any) -> str:
    if hasattr(estimator, "steps"):
        return " -> ".join(type(step).__name__ for _, step in estimator.steps)
    return type(estimator).__name__


def _score_bags_full(
    classifier: Any, bags: np.ndarray, y: np.ndarray, patients: Any, tile_truth: Any
) -> tuple[dict[str, Any], float | None, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """The reports of :func:`image_reports` on bags, and the probabilities scored: image
    ``(n, k)``, tiles ``(n, T, k)``."""
    tile_proba = classifier.predict_proba_tiles(bags)
    image_proba = classifier.predict_proba(bags)
    reports, rate, curves = image_reports(
        classifier, y, image_proba, patients, tile_truth=tile_truth, tile_proba=tile_proba
    )
    return reports, rate, curves, (image_proba, tile_proba)


def image_reports(
    classifier: Any,
    y: Any,
    image_proba: np.ndarray,
    patients: Any = None,
    *,
    tile_truth: Any = None,
    tile_proba: np.ndarray | None = None,
    image_pred: Any = None,
) -> tuple[dict[str, Any], float | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The reports of a fitted classifier's probabilities: one home for every command.

    Two classes: :func:`~skhybrid.metrics.binary_report` per level (the positive class by
    :mod:`skhybrid.class_roles`, honouring the classifier's ``negative_class``) and the curves
    to plot. More classes (the BreakHis subtypes): :func:`~skhybrid.metrics.multiclass_report`
    per level, no curves (the confusion matrix is drawn from ``predictions.csv``).

    Parameters
    ----------
    classifier : fitted classifier
        Its ``classes_`` are the columns of the probabilities.
    y : array-like of shape (n,)
        True image labels.
    image_proba : ndarray of shape (n, k)
    patients : array-like of shape (n,), optional
        For the patient recognition rate.
    tile_truth, tile_proba : arrays of shape (n, T) and (n, T, k), optional
        For a tile-level report.
    image_pred : array-like of shape (n,), optional
        The image decisions, when the model makes them otherwise than by the most probable
        class (a threshold tuned on inner patients, :mod:`skhybrid.recipes`); ``None``: the
        most probable class.

    Returns
    -------
    reports : dict of str to BinaryReport or MulticlassReport
    patient_rate : float or None
    curves : dict of str to (y_true, positive_scores)
    """
    classes = np.asarray(classifier.classes_)
    y = np.asarray(y)
    pred = classes[image_proba.argmax(axis=1)] if image_pred is None else np.asarray(image_pred)
    levels = {"image": (y, image_proba, pred)}
    if tile_truth is not None and tile_proba is not None:
        levels["tile"] = (np.asarray(tile_truth).reshape(-1), tile_proba.reshape(-1, len(classes)))
    rate = None
    if patients is not None:
        rate = patient_score(y, pred, patients)
    reports, curves = _level_reports(classifier, levels)
    return reports, rate, curves


def _level_reports(
    classifier: Any, levels: dict[str, tuple[np.ndarray, np.ndarray]]
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{level: (truth, proba[, decisions])}`` -> reports and curves (see :func:`image_reports`).

    Without decisions, the most probable class.
    """
    classes = np.asarray(classifier.classes_)
    reports: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    positive = _positive_column(classifier) if len(classes) == 2 else None
    for level, (truth, proba, *decided) in levels.items():
        pred = decided[0] if decided else classes[proba.argmax(axis=1)]
        if positive is None:  # k classes: no single positive class, no curves
            reports[level] = multiclass_report(
                truth, pred, proba, labels=classes, zero_division=ZERO_DIVISION
            )
            continue
        reports[level] = binary_report(truth, pred, proba[:, positive], zero_division=ZERO_DIVISION)
        curves[level] = (truth, proba[:, positive])
    return reports, curves


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, tuple, list))


#: Names given to numeric labels (0/1 ...) so that reports and predictions read well.
NEGATIVE_NAME, POSITIVE_NAME = "benign", "malignant"
POSITIVE = POSITIVE_NAME  # kept for code that imported it


def _as_named_labels(y: Any, tile_truth: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (and tile) labels as strings, their roles decided by :mod:`skhybrid.class_roles`.

    Two numeric classes are named ``'benign'`` (the negative class by the rule, e.g. 0) and
    ``'malignant'``; strings are kept as they are, once the rule can tell their roles. More
    than two classes (the BreakHis subtypes) must be names, so that reports and
    ``predictions.csv`` read well and the benign subtypes are recognised
    (:func:`skhybrid.class_roles.resolve_negative_classes`): pass ``target_names[target]``.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(
            f"The images need labels of at least two classes, got {classes.tolist()!r}."
        )
    if len(classes) > 2:
        if y.dtype.kind in "iufb":
            raise DataError(
                f"{len(classes)} numeric classes {classes.tolist()}: pass their names "
                "(e.g. data.target_names[data.target]) so the benign subtypes can be told apart."
            )
        try:
            resolve_negative_classes(classes)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        return y.astype(str), None if tile_truth is None else np.asarray(tile_truth).astype(str)
    try:
        roles = resolve_class_roles(classes)
    except ValueError as exc:
        raise DataError(str(exc)) from exc

    def named(labels: Any) -> np.ndarray:
        labels = np.asarray(labels)
        if y.dtype.kind in "iufb":
            unknown = set(np.unique(labels).tolist()) - set(classes.tolist())
            if unknown:
                raise DataError(f"tile_truth holds labels {sorted(unknown)} that y does not.")
            return np.where(labels == roles.positive, POSITIVE_NAME, NEGATIVE_NAME)
        return labels.astype(str)

    return named(y), None if tile_truth is None else named(tile_truth)


def _logger(verbose: int):
    def log(message: str) -> None:
        if verbose:
            print(message, flush=True)

    return log
