"""Hierarchical self-learning of sub-image (tile) labels.

A tile inherits the label of its image, but a malignant image also holds benign tissue, so many
of its tiles are mislabeled. The hierarchy patient -> image -> tile and prior knowledge give an
invariant: tiles of benign (negative) images are benign; only tiles of malignant (positive)
images may be wrong, and a malignant image holds at least one malignant tile. With the eight
BreakHis subtypes the four benign subtypes form the negative *set*
(:func:`skhybrid.class_roles.resolve_negative_classes`): a tile of a malignant image keeps its
subtype or falls back to the most probable benign subtype.
:class:`SelfLearningRelabeler` corrects the tile labels over a few rounds of out-of-fold
predictions under that invariant, then fits its estimator on the corrected tiles.

This module works with any scikit-learn classifier on flattened tiles; it imports nothing from
``skhybrid.estimators`` or ``skhybrid.nn``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _estimator_has,
    check_is_fitted,
    column_or_1d,
    has_fit_parameter,
)

from .class_roles import resolve_negative_classes
from .tiling import flatten_bags, unflatten_tiles

__all__ = ["SelfLearningRelabeler", "relabel_positive_tiles"]

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Any]
_NAME = "SelfLearningRelabeler"


# -- the default rule -----------------------------------------------------------------------------
def relabel_positive_tiles(
    tile_labels: Any,
    image_labels: Any,
    oof_proba: Any,
    classes: Any,
    *,
    negative_class: Any = None,
    negative_classes: Any = None,
    threshold: float = 0.5,
    min_positive_tiles: int = 1,
    allow_flip_back: bool = True,
) -> np.ndarray:
    """Relabel tiles of positive images as negative where the model is confident enough.

    This is the default rule of :class:`SelfLearningRelabeler`. The negative classes are one
    class (binary: benign) or a set (the benign BreakHis subtypes), see
    :func:`skhybrid.class_roles.resolve_negative_classes`. Its invariants:

    1. tiles of negative images never change (a benign image, of any benign subtype, holds
       only tissue of its own label);
    2. a tile of a positive image is either its image's label (e.g. its malignant subtype) or
       a negative class;
    3. every positive image keeps at least ``min_positive_tiles`` tiles of its own label: its
       most positive ones (lowest total negative probability; ties go to the earlier tile).

    A tile of a positive image becomes negative when its out-of-fold negative probability (the
    sum over the negative classes) exceeds ``threshold`` and it is not one of the kept
    most-positive tiles. It then takes the most probable negative class under ``oof_proba``
    (ties go to the first in ``classes``); with one negative class, that class. So the classes
    stay those of the images (e.g. the eight subtypes) and every metric applies to the tiles.

    Parameters
    ----------
    tile_labels : array-like of shape (n_images, n_tiles)
        Current tile labels (the previous round's output).
    image_labels : array-like of shape (n_images,)
        Image labels.
    oof_proba : array-like of shape (n_images, n_tiles, n_classes)
        Out-of-fold tile probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,)
        The class labels.
    negative_class : label, default=None
        The class whose images are all-negative and that tiles of other images may fall back to.
    negative_classes : array-like of labels, default=None
        Several such classes (the benign subtypes). When both are ``None`` the negative set is
        inferred by :func:`~skhybrid.class_roles.resolve_negative_classes` (benign BreakHis
        subtype names, ``"benign"``, the smaller of two numbers, ...); when both are given,
        ``negative_class`` must be one of ``negative_classes``.
    threshold : float, default=0.5
        A tile becomes negative when its negative probability (summed over the negative
        classes) is strictly greater.
    min_positive_tiles : int, default=1
        Tiles of its own label every positive image keeps.
    allow_flip_back : bool, default=True
        If True, each round re-derives the labels of positive images' tiles from the image labels
        and the latest probabilities, so a tile made negative in an earlier round returns to its
        image's label when the (cleaner) model no longer finds it negative. If False, negative
        tiles stay negative (labels only ever move towards the negative class), as in rounds
        that re-label from the current labels only (with several negative classes such a tile
        stays negative but takes the currently most probable negative class).

    Returns
    -------
    new_tile_labels : ndarray of shape (n_images, n_tiles)
        A new array; the inputs are not modified.

    Notes
    -----
    With more than two classes the rule still applies: each positive class (e.g. a malignant
    subtype) keeps its label or falls back to a negative class.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[0, 0, 0], [1, 1, 1]])
    >>> proba = np.array([[[0.1, 0.9]] * 3, [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]])
    >>> relabel_positive_tiles(labels, [0, 1], proba, [0, 1], negative_class=0)
    array([[0, 0, 0],
           [0, 1, 0]])

    Two benign subtypes (0, 1) and a malignant one (2): the benign-looking tiles of the
    malignant image take the more probable benign subtype.

    >>> proba = np.array([[[0.6, 0.3, 0.1]] * 3, [[0.2, 0.7, 0.1], [0.1, 0.1, 0.8],
    ...                                           [0.5, 0.3, 0.2]]])
    >>> relabel_positive_tiles([[0, 0, 0], [2, 2, 2]], [0, 2], proba, [0, 1, 2],
    ...                        negative_classes=[0, 1])
    array([[0, 0, 0],
           [1, 2, 0]])
    """
    tile_labels = np.asarray(tile_labels)
    image_labels = np.asarray(image_labels)
    proba = np.asarray(oof_proba, dtype=float)
    classes = np.asarray(classes)
    negatives = _negative_set(classes, negative_classes, negative_class)
    _check_rule_inputs(tile_labels, image_labels, proba, classes, negatives)
    if not np.isfinite(proba).all():
        # NaN compares False: it would silently keep every tile of its image positive.
        raise ValueError(
            "oof_proba contains NaN or infinite values; the tile classifier's predict_proba "
            "must return finite probabilities."
        )
    n_images, n_tiles = tile_labels.shape
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
    if not 1 <= min_positive_tiles <= n_tiles:
        raise ValueError(
            f"min_positive_tiles must be between 1 and n_tiles={n_tiles}, "
            f"got {min_positive_tiles!r}."
        )

    negative_columns = [_column_of(classes, c) for c in negatives]
    negative_proba = proba[..., negative_columns]
    p_negative = negative_proba.sum(axis=-1)
    # The benign tissue a tile falls back to: its most probable negative class.
    fallback = classes[negative_columns][np.argmax(negative_proba, axis=-1)]
    positive_image = ~np.isin(image_labels, negatives)[:, None]
    wants_negative = positive_image & (p_negative > threshold)
    rank_key = p_negative.copy()
    if not allow_flip_back:
        already_negative = positive_image & np.isin(tile_labels, negatives)
        wants_negative |= already_negative
        # The kept tiles must come from the still-positive ones, or a negative tile would
        # come back, which is what allow_flip_back=False rules out.
        rank_key[already_negative] = np.inf
    most_positive = np.argsort(rank_key, axis=1, kind="stable")[:, :min_positive_tiles]
    kept_positive = np.zeros((n_images, n_tiles), dtype=bool)
    np.put_along_axis(kept_positive, most_positive, True, axis=1)

    # result_type: a benign subtype name may be longer than the strings of tile_labels.
    dtype = np.result_type(tile_labels.dtype, classes.dtype)
    new_labels = np.repeat(image_labels[:, None], n_tiles, axis=1).astype(dtype)
    to_negative = wants_negative & ~kept_positive
    new_labels[to_negative] = fallback[to_negative]
    return new_labels


def _negative_set(classes: np.ndarray, negative_classes: Any, negative_class: Any) -> np.ndarray:
    """The negative classes as an array (one class for binary problems)."""
    negatives = resolve_negative_classes(classes, negative_classes, negative_class=negative_class)
    return np.asarray(negatives, dtype=classes.dtype)


def _column_of(classes: np.ndarray, label: Any) -> int:
    matches = np.flatnonzero(classes == label)
    if len(matches) != 1:
        raise ValueError(f"Class {label!r} is not one of the classes {classes.tolist()}.")
    return int(matches[0])


def _check_rule_inputs(
    tile_labels: np.ndarray,
    image_labels: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    negatives: np.ndarray,
) -> None:
    if tile_labels.ndim != 2:
        raise ValueError(
            f"tile_labels must have shape (n_images, n_tiles), got {tile_labels.shape}."
        )
    n_images, n_tiles = tile_labels.shape
    if image_labels.shape != (n_images,):
        raise ValueError(f"image_labels must have shape ({n_images},), got {image_labels.shape}.")
    if proba.shape != (n_images, n_tiles, len(classes)):
        raise ValueError(
            f"oof_proba must have shape ({n_images}, {n_tiles}, {len(classes)}), got {proba.shape}."
        )
    for label in negatives:
        _column_of(classes, label)


def _check_rule_output(
    new_labels: Any,
    image_labels: np.ndarray,
    classes: np.ndarray,
    negatives: np.ndarray,
    min_positive_tiles: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """Check the hierarchical invariants on any rule's output and return it as an array."""
    new_labels = np.asarray(new_labels)
    if new_labels.shape != shape:
        raise ValueError(
            f"The rule returned tile labels of shape {new_labels.shape}, expected {shape}."
        )
    unknown = ~np.isin(new_labels, classes)
    if unknown.any():
        raise ValueError(
            f"The rule returned labels {np.unique(new_labels[unknown]).tolist()[:5]} that are "
            f"not among the classes {classes.tolist()}."
        )
    negative_image = np.isin(image_labels, negatives)
    own_label = new_labels == image_labels[:, None]
    names = negatives[0] if len(negatives) == 1 else negatives.tolist()
    if (~own_label[negative_image]).any():
        raise ValueError(
            f"The rule changed tiles of negative ({names!r}) images; the hierarchy says "
            "they are all negative, of their image's class."
        )
    if ((~own_label & ~np.isin(new_labels, negatives))[~negative_image]).any():
        raise ValueError(
            "The rule gave a tile of a positive image a label other than its image's label or "
            f"the negative class {names!r}."
        )
    too_few = own_label[~negative_image].sum(axis=1) < min_positive_tiles
    if too_few.any():
        raise ValueError(
            f"The rule left {int(too_few.sum())} positive images with fewer than "
            f"min_positive_tiles={min_positive_tiles} tiles of their own label."
        )
    return new_labels


# -- the meta-estimator ---------------------------------------------------------------------------
class SelfLearningRelabeler(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Correct inherited tile labels by hierarchical self-learning, then classify bags.

    Every tile (sub-image) starts with its image's label. Each round fits clones of
    ``estimator`` on tiles, predicts every tile out of fold on a group-aware split (all tiles
    of an image, or of a patient when ``groups`` is given, fall in the same fold) and applies
    the rule: by default a tile of a positive (malignant) image becomes negative (benign) when
    its out-of-fold negative probability exceeds ``threshold``, tiles of negative images never
    change, and every positive image keeps its ``min_positive_tiles`` most positive tiles.
    Rounds stop early when no label changes. ``estimator_`` is then refit on all tiles with the
    corrected labels. Modelled on scikit-learn's
    :class:`~sklearn.semi_supervised.SelfTrainingClassifier`.

    Parameters
    ----------
    estimator : estimator object
        A classifier with ``fit`` and ``predict_proba`` that takes flattened tiles
        ``(n_images * n_tiles, ...)``: e.g. a :class:`~sklearn.pipeline.Pipeline` of
        :class:`~skhybrid.features.ColorTextureFeatures` and a linear model, or skhybrid's
        ``HybridCNNLSTMClassifier``. If its ``fit`` accepts ``groups``, it receives the group
        of every tile (for its own group-aware validation split).
    n_rounds : int, default=4
        Maximum number of relabeling rounds (the paper uses four); 0 fits on the inherited
        labels.
    threshold : float, default=0.5
        Out-of-fold negative probability above which a tile of a positive image becomes
        negative, in ``(0, 1)``. The probabilities come from a model trained on noisy labels
        that call benign tissue of malignant images malignant, so they lean towards the
        positive class: use a class-balanced estimator (e.g.
        ``LogisticRegression(class_weight="balanced")``) or a lower threshold.
    negative_class : label, default=None
        The class whose images contain only negative tiles (binary problems). ``None`` infers
        it with :func:`skhybrid.class_roles.resolve_class_roles` (``"benign"``/``"normal"``/
        ``"B"``, else the smallest numeric class), else an error asks for it.
    negative_classes : array-like of labels, default=None
        Several negative classes: the benign subtypes of a k-class (subtype) problem, e.g.
        ``[0, 1, 2, 3]`` for ``load_breakhis(target="subtype")``. Their images never change,
        and a tile of a positive (malignant-subtype) image that falls back takes the most
        probable of them; ``threshold`` applies to their summed probability. ``None`` infers
        the set with :func:`skhybrid.class_roles.resolve_negative_classes`: BreakHis subtype
        names give the four benign subtypes, otherwise the set is ``{negative_class}``
        (resolved as above). With both given, ``negative_class`` must be one of them. The
        default rule on more than two numeric classes needs one of the two parameters.
    min_positive_tiles : int, default=1
        Tiles of its own label that every positive image keeps (at least one malignant tile
        per malignant image); also the ``k`` of the image-level aggregation.
    allow_flip_back : bool, default=True
        If True, a tile made negative in one round returns to its image's label when a later,
        cleaner model no longer finds it negative; a false early correction can be undone. If
        False, labels only move towards the negative class. See :func:`relabel_positive_tiles`.
    rule : callable, default=None
        ``None`` uses :func:`relabel_positive_tiles` with the parameters above (two classes,
        or k classes with their negative set). A callable is called once per round as
        ``rule(tile_labels, image_labels, oof_proba, classes) -> new_tile_labels`` with arrays
        of shapes ``(n, T)``, ``(n,)``, ``(n, T, n_classes)``, ``(n_classes,)`` (copies; the
        probability columns follow ``classes``) and must return ``(n, T)`` labels. Its output is
        checked against the hierarchical invariants (negative images' tiles stay negative;
        other tiles keep their image's label or become a negative class; every positive
        image keeps ``min_positive_tiles`` tiles of its own label) and rejected with a
        ``ValueError`` when it breaks them. ``threshold`` and ``allow_flip_back`` are not passed
        to it: bind its own settings with :func:`functools.partial` (a module-level function
        or partial pickles; a lambda does not).
    cv : int or cross-validation splitter, default=5
        Folds of the out-of-fold predictions. An int uses
        :class:`~sklearn.model_selection.StratifiedGroupKFold` (shuffled with
        ``random_state``) on the image (or patient) groups. A splitter is called as
        ``cv.split(tiles, tile_labels, tile_groups)`` and must keep every group on one side;
        the split is made once and reused in every round.
    random_state : int, RandomState instance or None, default=None
        Seed of the fold assignment.
    verbose : int, default=0
        1 prints one line per round; 2 also shows a progress bar over the folds.

    Attributes
    ----------
    estimator_ : estimator object
        Clone of ``estimator`` fitted on all tiles with the corrected labels.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    negative_classes_ : ndarray of shape (n_negative_classes,)
        The resolved negative classes, in the order of ``classes_``.
    negative_class_ : label or None
        The resolved negative class; ``None`` when there are several (``negative_classes_``).
        The resolved negative class.
    tile_labels_ : ndarray of shape (n_images, n_tiles)
        Corrected tile labels of the training bags.
    tile_label_history_ : ndarray of shape (n_rounds_ + 1, n_images, n_tiles)
        Tile labels after each round; index 0 holds the inherited labels.
    history_ : list of dict
        One dict per round, round 0 first (the inherited labels): ``round``,
        ``n_relabeled`` (tiles whose label changed in that round), ``n_to_negative``,
        ``n_to_positive`` (tiles that flipped back) and ``class_counts`` (tiles per class).
        :func:`skhybrid.reporting.format_self_learning_history` prints it as the paper's
        Table 4.
    oof_proba_ : ndarray of shape (n_images, n_tiles, n_classes) or None
        Out-of-fold tile probabilities of the last round (``None`` when ``n_rounds=0``).
    n_rounds_ : int
        Relabeling rounds run.
    termination_condition_ : {"max_rounds", "no_change"}
        Why the rounds stopped.
    n_tiles_ : int
        Tiles per bag seen in ``fit``.

    See Also
    --------
    relabel_positive_tiles : The default rule.
    sklearn.semi_supervised.SelfTrainingClassifier : Self-training of unlabeled samples.

    Notes
    -----
    **Image-level predictions follow the rule.** The probabilities of an image are the mean
    tile probabilities of its ``min_positive_tiles`` most positive tiles (lowest negative
    probability). For two classes and ``min_positive_tiles=1`` an image's positive probability
    is the maximum over its tiles: an image is positive when one of its tiles is, the
    multiple-instance reading of "a malignant image holds at least one malignant tile".
    :meth:`predict_tiles` and :meth:`predict_proba_tiles` give the tile-level results.

    **Inputs.** ``bags`` may be any array ``(n_images, n_tiles, ...)``: uint8 tiles
    ``(n, T, h, w, 3)`` from :class:`~skhybrid.tiling.SubImageTiler` or precomputed per-tile
    features ``(n, T, d)``; the relabeler only flattens them to ``(n * T, ...)`` for the
    estimator. Inputs are never modified.

    Extra fit parameters (sample weights, metadata routing) are not forwarded.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhybrid.datasets import make_histology
    >>> from skhybrid.features import ColorTextureFeatures
    >>> from skhybrid.self_learning import SelfLearningRelabeler
    >>> from skhybrid.tiling import SubImageTiler
    >>> data = make_histology(60, image_size=(96, 144), random_state=0)
    >>> bags = SubImageTiler(grid=(3, 3)).fit_transform(data.images)
    >>> inner = make_pipeline(
    ...     ColorTextureFeatures(), StandardScaler(),
    ...     LogisticRegression(class_weight="balanced"))
    >>> relabeler = SelfLearningRelabeler(inner, random_state=0).fit(bags, data.target)
    >>> relabeler.tile_labels_.shape
    (60, 9)
    """

    def __init__(
        self,
        estimator: Any,
        n_rounds: int = 4,
        *,
        threshold: float = 0.5,
        negative_class: Any = None,
        negative_classes: Any = None,
        min_positive_tiles: int = 1,
        allow_flip_back: bool = True,
        rule: Rule | None = None,
        cv: Any = 5,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.n_rounds = n_rounds
        self.threshold = threshold
        self.negative_class = negative_class
        self.negative_classes = negative_classes
        self.min_positive_tiles = min_positive_tiles
        self.allow_flip_back = allow_flip_back
        self.rule = rule
        self.cv = cv
        self.random_state = random_state
        self.verbose = verbose

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Relabelers pickled before k-class support have neither the negative_classes
        # parameter nor the negative_classes_ attribute; their one negative class is the set.
        state.setdefault("negative_classes", None)
        if "negative_class_" in state and "negative_classes_" not in state:
            state["negative_classes_"] = np.asarray([state["negative_class_"]])
        super().__setstate__(state)

    # -- validation -------------------------------------------------------------------------
    def _validate_params(self) -> None:  # type: ignore[override]
        if not _is_int(self.n_rounds) or self.n_rounds < 0:
            raise ValueError(f"n_rounds must be an integer >= 0, got {self.n_rounds!r}.")
        if (
            not isinstance(self.threshold, numbers.Real)
            or isinstance(self.threshold, bool)
            or not 0 < self.threshold < 1
        ):
            raise ValueError(f"threshold must be a number in (0, 1), got {self.threshold!r}.")
        if not _is_int(self.min_positive_tiles) or self.min_positive_tiles < 1:
            raise ValueError(
                f"min_positive_tiles must be an integer >= 1, got {self.min_positive_tiles!r}."
            )
        if self.rule is not None and not callable(self.rule):
            raise TypeError(f"rule must be None or a callable, got {self.rule!r}.")
        if _is_int(self.cv):
            if self.cv < 2:
                raise ValueError(f"cv must be at least 2 folds, got {self.cv!r}.")
        elif not hasattr(self.cv, "split"):
            raise TypeError(
                f"cv must be an int or a cross-validation splitter with split(), got {self.cv!r}."
            )
        if not _is_int(self.verbose) or self.verbose < 0:
            raise ValueError(f"verbose must be an integer >= 0, got {self.verbose!r}.")
        if not hasattr(self.estimator, "fit") or not hasattr(self.estimator, "predict_proba"):
            raise TypeError(
                f"estimator must implement fit and predict_proba (out-of-fold tile probabilities "
                f"drive the relabeling), got {type(self.estimator).__name__}. Wrap a classifier "
                "without it in sklearn.calibration.CalibratedClassifierCV."
            )

    def _resolve_negative_classes(self, classes: np.ndarray) -> np.ndarray:
        # Validates negative_class / negative_classes against the classes seen in fit.
        return _negative_set(classes, self.negative_classes, self.negative_class)

    def _check_targets(self, y: Any, n_images: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{_NAME} requires y to be passed, but the target y is None.")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1:
            raise ValueError(
                f"y must hold one label per image, shape ({n_images},), got {y.shape}; the "
                "relabeler derives the tile labels itself."
            )
        y = column_or_1d(y)
        check_classification_targets(y)
        if len(y) != n_images:
            raise ValueError(f"bags hold {n_images} images but y has {len(y)} labels.")
        return y

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, bags: Any, y: Any, groups: Any = None) -> SelfLearningRelabeler:
        """Correct the tile labels round by round, then fit ``estimator_`` on all tiles.

        Parameters
        ----------
        bags : array-like of shape (n_images, n_tiles, ...)
            Bags of tiles ``(n, T, h, w, 3)`` or per-tile features ``(n, T, d)``.
        y : array-like of shape (n_images,)
            Image labels; every tile starts with its image's label.
        groups : array-like of shape (n_images,), default=None
            Group of each image, e.g. the patient. The out-of-fold split then keeps every
            patient on one side (stricter than the default, which keeps every image on one
            side), and the estimator receives it per tile when its ``fit`` takes ``groups``.

        Returns
        -------
        self : SelfLearningRelabeler
        """
        self._validate_params()
        bags = _check_bag_array(bags)
        n_images, n_tiles = bags.shape[:2]
        y = self._check_targets(y, n_images)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y holds 1 class {self.classes_.tolist()}; relabeling needs negative and "
                "positive images."
            )
        self.negative_classes_ = self._resolve_negative_classes(self.classes_)
        negatives = self.negative_classes_
        self.negative_class_ = _plain(negatives[0]) if len(negatives) == 1 else None
        if (
            self.rule is None
            and len(self.classes_) > 2
            and self.negative_class is None
            and self.negative_classes is None
            and self.classes_.dtype.kind in "biuf"
        ):
            # Numeric subtype codes do not say which are benign; the smallest alone would
            # silently make the other benign subtypes "positive".
            raise ValueError(
                f"The default rule needs binary labels or the negative classes: on "
                f"{len(self.classes_)} numeric classes {self.classes_.tolist()} it cannot tell "
                "which are benign tissue. Pass negative_classes= (e.g. [0, 1, 2, 3] for "
                "load_breakhis(target='subtype')) or negative_class=."
            )
        if self.min_positive_tiles > n_tiles:
            raise ValueError(
                f"min_positive_tiles={self.min_positive_tiles} exceeds the {n_tiles} tiles per bag."
            )
        self.n_tiles_ = n_tiles
        self._bag_ndim = bags.ndim

        tiles, _, image_index = flatten_bags(bags)
        tile_groups = _tile_groups(groups, image_index, n_images)
        splits = self._make_splits(tiles, np.repeat(y, n_tiles), tile_groups)

        tile_labels = np.repeat(y[:, None], n_tiles, axis=1)
        label_history = [tile_labels]
        self.history_ = [self._history_entry(0, tile_labels, tile_labels)]
        self.oof_proba_ = None
        self.termination_condition_ = "max_rounds"
        for round_number in range(1, self.n_rounds + 1):
            self.oof_proba_ = self._out_of_fold_proba(tiles, tile_labels, tile_groups, splits)
            new_labels = self._apply_rule(tile_labels, y, self.oof_proba_)
            entry = self._history_entry(round_number, tile_labels, new_labels)
            self.history_.append(entry)
            label_history.append(new_labels)
            self._report_round(entry)
            unchanged = entry["n_relabeled"] == 0
            tile_labels = new_labels
            if unchanged:
                self.termination_condition_ = "no_change"
                break
        self.n_rounds_ = len(self.history_) - 1
        self.tile_labels_ = tile_labels
        self.tile_label_history_ = np.stack(label_history)

        self.estimator_ = self._fit_estimator(tiles, tile_labels.reshape(-1), tile_groups)
        return self

    def _make_splits(
        self, tiles: np.ndarray, tile_y: np.ndarray, tile_groups: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Split the tiles once so that every round's predictions are out of fold for the
        same images, and check that no group straddles a split."""
        if _is_int(self.cv):
            splitter = StratifiedGroupKFold(
                n_splits=self.cv, shuffle=True, random_state=self.random_state
            )
        else:
            splitter = self.cv
        n_groups = len(np.unique(tile_groups))
        n_splits = splitter.get_n_splits(tiles, tile_y, tile_groups)
        if n_groups < n_splits:
            raise ValueError(
                f"cv={n_splits} folds need at least {n_splits} images (or groups), got "
                f"{n_groups}. Lower cv or add images."
            )
        splits = [
            (np.asarray(train), np.asarray(test))
            for train, test in splitter.split(tiles, tile_y, tile_groups)
        ]
        predicted = np.zeros(len(tiles), dtype=int)
        for train, test in splits:
            if np.isin(tile_groups[test], tile_groups[train]).any():
                raise ValueError(
                    "The cv splitter put tiles of one image (or group) on both sides of a split; "
                    "use a group-aware splitter such as GroupKFold or StratifiedGroupKFold."
                )
            predicted[test] += 1
        if (predicted != 1).any():
            raise ValueError(
                "The cv splitter must put every tile in exactly one test fold to give out-of-fold "
                "probabilities for all tiles."
            )
        return splits

    def _fit_kwargs(self, tile_groups: np.ndarray) -> dict[str, Any]:
        if has_fit_parameter(self.estimator, "groups"):
            return {"groups": tile_groups}
        return {}

    def _fit_estimator(self, tiles: np.ndarray, labels: np.ndarray, tile_groups: np.ndarray) -> Any:
        estimator = clone(self.estimator)
        return estimator.fit(tiles, labels, **self._fit_kwargs(tile_groups))

    def _out_of_fold_proba(
        self,
        tiles: np.ndarray,
        tile_labels: np.ndarray,
        tile_groups: np.ndarray,
        splits: list[tuple[np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        flat_labels = tile_labels.reshape(-1)
        proba = np.zeros((len(flat_labels), len(self.classes_)))
        for train, test in self._progress(splits):
            model = self._fit_estimator(tiles[train], flat_labels[train], tile_groups[train])
            proba[test] = _align_proba(
                model.predict_proba(tiles[test]), model.classes_, self.classes_
            )
        return unflatten_tiles(proba, self.n_tiles_)

    def _progress(self, splits: list[Any]) -> Iterator[Any]:
        if self.verbose < 2:
            return iter(splits)
        from tqdm.auto import tqdm

        return iter(tqdm(splits, desc=f"{_NAME} folds", leave=False))

    def _apply_rule(
        self, tile_labels: np.ndarray, y: np.ndarray, oof_proba: np.ndarray
    ) -> np.ndarray:
        if self.rule is None:
            new_labels = relabel_positive_tiles(
                tile_labels,
                y,
                oof_proba,
                self.classes_,
                negative_classes=self.negative_classes_,
                threshold=self.threshold,
                min_positive_tiles=self.min_positive_tiles,
                allow_flip_back=self.allow_flip_back,
            )
        else:
            # Copies: a rule that writes into its arguments must not corrupt our state.
            new_labels = self.rule(
                tile_labels.copy(), y.copy(), oof_proba.copy(), self.classes_.copy()
            )
        return _check_rule_output(
            new_labels,
            y,
            self.classes_,
            self.negative_classes_,
            self.min_positive_tiles,
            tile_labels.shape,
        )

    def _history_entry(self, round_number: int, old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
        changed = old != new
        # A change between two negative classes (benign subtypes) is neither.
        was_negative = np.isin(old, self.negative_classes_)
        is_negative = np.isin(new, self.negative_classes_)
        return {
            "round": round_number,
            "n_relabeled": int(changed.sum()),
            "n_to_negative": int((changed & is_negative & ~was_negative).sum()),
            "n_to_positive": int((changed & was_negative & ~is_negative).sum()),
            "class_counts": {_plain(c): int((new == c).sum()) for c in self.classes_},
        }

    def _negative_name(self) -> str:
        negatives = [_plain(c) for c in self.negative_classes_]
        return repr(negatives[0]) if len(negatives) == 1 else f"benign tissue {negatives!r}"

    def _report_round(self, entry: dict[str, Any]) -> None:
        if not self.verbose:
            return
        counts = ", ".join(f"{c}={n}" for c, n in entry["class_counts"].items())
        print(
            f"[{_NAME}] round {entry['round']}/{self.n_rounds}: {entry['n_relabeled']} tiles "
            f"relabeled ({entry['n_to_negative']} to {self._negative_name()}, "
            f"{entry['n_to_positive']} back); {counts}",
            flush=True,
        )

    # -- reporting --------------------------------------------------------------------------
    def format_history(self, tile_truth: Any = None) -> str:
        """Tile class counts per round as a Markdown table (the paper's Table 4).

        .. deprecated:: 0.2
            Rendering moved out of the estimator: use
            :func:`skhybrid.reporting.format_self_learning_history` (same arguments and
            output). This method warns and calls it.
        """
        import warnings

        from .reporting import format_self_learning_history

        warnings.warn(
            "SelfLearningRelabeler.format_history is deprecated; use "
            "skhybrid.reporting.format_self_learning_history(relabeler, tile_truth).",
            FutureWarning,
            stacklevel=2,
        )
        return format_self_learning_history(self, tile_truth)

    # -- prediction -------------------------------------------------------------------------
    def _flat_tiles(self, bags: Any) -> tuple[np.ndarray, int, int]:
        check_is_fitted(self, "estimator_")
        bags = _check_bag_array(bags)
        if bags.ndim != self._bag_ndim:
            raise ValueError(
                f"bags have {bags.ndim} dimensions but the relabeler was fitted on "
                f"{self._bag_ndim}-dimensional bags."
            )
        if bags.shape[1] < self.min_positive_tiles:
            raise ValueError(
                f"bags hold {bags.shape[1]} tiles, fewer than min_positive_tiles="
                f"{self.min_positive_tiles}."
            )
        tiles, _, _ = flatten_bags(bags)
        return tiles, bags.shape[0], bags.shape[1]

    @available_if(_estimator_has("predict_proba"))
    def predict_proba_tiles(self, bags: Any) -> np.ndarray:
        """Tile probabilities ``(n_images, n_tiles, n_classes)``, columns as ``classes_``."""
        tiles, _, n_tiles = self._flat_tiles(bags)
        proba = self.estimator_.predict_proba(tiles)
        return unflatten_tiles(
            _align_proba(proba, self.estimator_.classes_, self.classes_), n_tiles
        )

    @available_if(_estimator_has("predict"))
    def predict_tiles(self, bags: Any) -> np.ndarray:
        """Tile labels ``(n_images, n_tiles)`` predicted by ``estimator_``."""
        tiles, _, n_tiles = self._flat_tiles(bags)
        return unflatten_tiles(self.estimator_.predict(tiles), n_tiles)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, bags: Any) -> np.ndarray:
        """Image probabilities: mean tile probabilities of each image's most positive tiles.

        Parameters
        ----------
        bags : array-like of shape (n_images, n_tiles, ...)

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            Columns in the order of ``classes_``. The ``min_positive_tiles`` tiles with the
            lowest negative probability (summed over ``negative_classes_``) are averaged, mirroring the rule that every positive
            image holds that many positive tiles.
        """
        tile_proba = self.predict_proba_tiles(bags)
        negative_columns = [_column_of(self.classes_, c) for c in self.negative_classes_]
        p_negative = tile_proba[..., negative_columns].sum(axis=-1)
        return _mean_of_most_positive(tile_proba, -p_negative, self.min_positive_tiles)

    @available_if(_estimator_has("predict_proba"))
    def predict_log_proba(self, bags: Any) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(bags))

    @available_if(_estimator_has("predict_proba"))
    def predict(self, bags: Any) -> np.ndarray:
        """Image labels: the class of highest :meth:`predict_proba`.

        Parameters
        ----------
        bags : array-like of shape (n_images, n_tiles, ...)

        Returns
        -------
        labels : ndarray of shape (n_images,)
        """
        check_is_fitted(self, "estimator_")
        return self.classes_[np.argmax(self.predict_proba(bags), axis=1)]

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, bags: Any) -> np.ndarray:
        """Image scores aggregated like :meth:`predict_proba`.

        For two classes the score of an image is the mean tile score of its
        ``min_positive_tiles`` highest-scoring tiles, signed so that it favours ``classes_[1]``
        like scikit-learn's. For more classes, the rows of the tiles least like the negative
        class are averaged.

        Returns
        -------
        scores : ndarray of shape (n_images,) or (n_images, n_classes)
        """
        tiles, _, n_tiles = self._flat_tiles(bags)
        scores = unflatten_tiles(self.estimator_.decision_function(tiles), n_tiles)
        k = self.min_positive_tiles
        if scores.ndim == 2:
            # sklearn's binary score favours classes_[1]; flip it when that is the negative class.
            sign = -1.0 if self.classes_[1] == self.negative_class_ else 1.0
            positive_scores = sign * scores
            top = -np.sort(-positive_scores, axis=1)[:, :k]
            return sign * top.mean(axis=1)
        negative_columns = [
            _column_of(self.estimator_.classes_, c)
            for c in self.negative_classes_
            if c in self.estimator_.classes_
        ]
        return _mean_of_most_positive(scores, -scores[..., negative_columns].max(axis=-1), k)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # bags are (n, T, ...); the closest tag sklearn has
        tags.classifier_tags.multi_class = (
            self.rule is not None or self.negative_classes is not None
        )
        return tags


# -- helpers --------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _plain(label: Any) -> Any:
    """A numpy scalar label as a plain Python value (readable keys, JSON-serialisable)."""
    return label.item() if isinstance(label, np.generic) else label


def _check_bag_array(bags: Any) -> np.ndarray:
    if sp.issparse(bags):
        raise TypeError(
            "Sparse input is not supported: bags must be a dense array (n_images, n_tiles, ...)."
        )
    array = np.asarray(bags)
    if array.ndim < 3:
        hint = ""
        if array.ndim == 2:
            hint = " For one value per tile add a feature axis: bags[..., np.newaxis]."
        raise ValueError(
            f"Reshape your data: bags must have shape (n_images, n_tiles, ...) with at least one "
            f"per-tile axis, "
            f"got {array.shape}.{hint} SubImageTiler produces bags from images."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"bags: got an empty array of shape {array.shape}.")
    return array


def _tile_groups(groups: Any, image_index: np.ndarray, n_images: int) -> np.ndarray:
    """Group of every tile: the image index, or the user's image groups broadcast to tiles."""
    if groups is None:
        return image_index
    groups = np.asarray(groups)
    if groups.shape != (n_images,):
        raise ValueError(
            f"groups must hold one group per image, shape ({n_images},), got {groups.shape}."
        )
    return groups[image_index]


def _align_proba(proba: np.ndarray, model_classes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Put the columns of ``proba`` in the order of ``classes``; absent classes get 0.

    A fold (or a relabeling) may leave a class out of a model's training tiles.
    """
    proba = np.asarray(proba, dtype=float)
    if len(model_classes) == len(classes) and np.array_equal(model_classes, classes):
        return proba
    aligned = np.zeros((len(proba), len(classes)))
    for column, label in enumerate(model_classes):
        aligned[:, _column_of(classes, label)] = proba[:, column]
    return aligned


def _mean_of_most_positive(values: np.ndarray, positiveness: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values (n, T, c)`` over each bag's ``k`` tiles of highest ``positiveness``."""
    order = np.argsort(-positiveness, axis=1, kind="stable")[:, :k]
    selected = np.take_along_axis(values, order[..., None], axis=1)
    return selected.mean(axis=1)
