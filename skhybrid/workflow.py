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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from .class_roles import resolve_class_roles, roles_of
from .exceptions import DataError, UserError
from .metrics import BinaryReport, binary_report, patient_score
from .reporting import format_self_learning_history, write_outputs
from .splits import PROTOCOLS, patient_split_indices, random_tile_split_indices
from .tiling import SubImageTiler, flatten_bags

__all__ = [
    "ExperimentResult",
    "classifier_defaults",
    "default_aggregation",
    "make_classifier",
    "make_relabeling_proposer",
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
        """Write ``report.json``, the history table, ROC / precision-recall PNGs, ``model.joblib``.

        The one writer of every command's output folder
        (:func:`skhybrid.reporting.write_outputs`). The model is written for prediction, without the optimizer's state (a third of the
        size), unless ``keep_optimizer_state`` (see :func:`skhybrid.save_model`). Plots need
        matplotlib (``pip install 'skhybrid[plots]'``); without it they are skipped with a
        warning and the rest is still written.
        """
        return write_outputs(
            out_dir,
            self.to_dict(),
            curves=self.curves,
            history_table=self.history_table,
            model=self.model if save_model else None,
            keep_optimizer_state=keep_optimizer_state,
        )


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


@dataclass
class _Relabeling:
    """What the self-learning step hands to a protocol: tile labels and their history."""

    tile_labels: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""


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
    return _Relabeling(relabeler.tile_labels_, relabeler.history_, table)


@dataclass
class _ProtocolResult:
    reports: dict[str, BinaryReport]
    patient_score: float | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    relabeling: _Relabeling
    tile_label_accuracy: dict[str, float]
    n_train: int
    n_test: int


def _run_patient_protocol(
    bags: np.ndarray,
    y: np.ndarray,
    patients: np.ndarray,
    tile_truth: np.ndarray | None,
    classifier: Any,
    relabel: Any,
    *,
    test_size: float,
    random_state: Any,
    log: Any,
) -> _ProtocolResult:
    """Split images by patient, relabel and train on the training patients, score the rest."""
    n_tiles = bags.shape[1]
    try:
        train, test = patient_split_indices(
            y, patients, test_size=test_size, random_state=random_state
        )
    except ValueError as exc:  # too few patients per class: the user's data, not a bug
        raise DataError(f"Cannot split these images patient-wise: {exc}") from exc
    log(
        f"Patient-wise split: {len(train)} training images ({len(np.unique(patients[train]))} "
        f"patients), {len(test)} test images ({len(np.unique(patients[test]))} patients)."
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
    classifier.fit(bags[train], relabeling.tile_labels, groups=patients[train])
    reports, rate, curves = _score_bags(
        classifier,
        bags[test],
        y[test],
        patients[test],
        None if tile_truth is None else tile_truth[test],
    )
    return _ProtocolResult(reports, rate, curves, relabeling, accuracy, len(train), len(test))


def _run_paper_protocol(
    bags: np.ndarray,
    y: np.ndarray,
    patients: np.ndarray,
    tile_truth: np.ndarray | None,
    classifier: Any,
    relabel: Any,
    *,
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
    classifier.fit(tiles[train], tile_y[train])
    positive = _positive_column(classifier)
    proba = classifier.predict_proba(tiles[test])
    pred = np.asarray(classifier.classes_)[proba.argmax(axis=1)]
    levels = {"tile (corrected labels)": tile_y[test]}
    if tile_truth is not None:
        levels["tile"] = tile_truth.reshape(-1)[test]
    reports = {
        level: binary_report(truth, pred, proba[:, positive], zero_division=ZERO_DIVISION)
        for level, truth in levels.items()
    }
    curves = {level: (truth, proba[:, positive]) for level, truth in levels.items()}
    return _ProtocolResult(reports, None, curves, relabeling, {}, len(train), len(test))


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
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    if relabel_with not in RELABELERS:
        raise UserError(f"relabel_with must be one of {RELABELERS}, got {relabel_with!r}.")
    if not (isinstance(self_learning_rounds, (int, np.integer)) and self_learning_rounds >= 0):
        raise UserError(f"self_learning_rounds must be an int >= 0, got {self_learning_rounds!r}.")
    y, tile_truth = _as_named_labels(y, tile_truth)
    patients = np.asarray(patients)
    tiler = clone(tiler) if tiler is not None else SubImageTiler(tile_size=(224, 224))
    classifier = clone(classifier)
    if "aggregation" in classifier.get_params(deep=False):
        # Decided here, once, for every caller (the command line passes None too).
        classifier.set_params(aggregation=aggregation or default_aggregation(self_learning_rounds))
    log = _logger(verbose)
    started = time.perf_counter()

    log(f"Cutting {len(y)} images into tiles ...")
    bags = tiler.fit_transform(X)
    n_images, n_tiles = bags.shape[:2]
    proposer = make_relabeling_proposer(random_state) if relabel_with == "features" else classifier

    def relabel(bags_: Any, y_: Any, groups: Any, truth: Any, where: str) -> _Relabeling:
        if self_learning_rounds > 0:
            log(f"Self-learning{where}: up to {self_learning_rounds} rounds of tile relabeling ...")
        return _self_learning_step(
            bags_,
            y_,
            groups,
            rounds=self_learning_rounds,
            proposer=proposer,
            tile_truth=truth,
            random_state=random_state,
            verbose=max(verbose - 1, 0),
            log=log,
        )

    if test_size is None:
        test_size = DEFAULT_TEST_SIZE[protocol]
    outcome = _PROTOCOL_RUNNERS[protocol](
        bags,
        y,
        patients,
        tile_truth,
        classifier,
        relabel,
        test_size=test_size,
        random_state=random_state,
        log=log,
    )
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
        "seconds": round(time.perf_counter() - started, 1),
    }
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


#: Names given to numeric labels (0/1 ...) so that reports and predictions read well.
NEGATIVE_NAME, POSITIVE_NAME = "benign", "malignant"
POSITIVE = POSITIVE_NAME  # kept for code that imported it


def _as_named_labels(y: Any, tile_truth: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Image (and tile) labels as strings, their roles decided by :mod:`skhybrid.class_roles`.

    Numbers are named ``'benign'`` (the negative class by the rule, e.g. 0) and
    ``'malignant'``; strings are kept as they are, once the rule can tell their roles.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) != 2:
        raise DataError(f"The images need labels of exactly two classes, got {classes.tolist()!r}.")
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
