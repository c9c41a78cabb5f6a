"""Ready-made recipes: the measured default pipeline and the paper's, one call each.

``recommended_pipeline()`` is the recipe that measured best on real BreakHis 200X patches
split patient-wise (``docs/results.md``, produced by ``python -m benchmarks.recipe_search``);
``paper_pipeline()`` is the hybrid CNN-LSTM of the paper with self-learning. Both return
unfitted scikit-learn estimators that take images ``(n, H, W, 3)`` uint8.

The decision of the recommended recipe is calibrated on the training patients:
:class:`PatientThresholdClassifier` chooses the decision threshold (and, optionally, a
probability calibration) from out-of-fold predictions on *inner* patient-wise folds of the
training data, so the test patients never influence it, and ``predict`` applies it.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from .class_roles import resolve_class_roles

__all__ = [
    "RECIPES",
    "RECOMMENDED_STEPS",
    "PatientThresholdClassifier",
    "fit_recipe",
    "make_recipe",
    "mean_and_std_over_tiles",
    "mean_over_tiles",
    "paper_pipeline",
    "recommended_pipeline",
]


# --------------------------------------------------------------------------- decisions


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


class PatientThresholdClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A binary classifier whose decision threshold is tuned on inner patient-wise folds.

    ``fit(X, y, groups)`` splits the training data into ``n_splits`` folds by patient
    (:class:`~sklearn.model_selection.StratifiedGroupKFold`; without ``groups``, stratified
    folds of samples), collects the out-of-fold probability of the positive class with
    :func:`~sklearn.model_selection.cross_val_predict`, optionally fits a calibration map on
    them, and chooses the threshold that maximises balanced accuracy on these *inner
    validation* predictions. The estimator is then refitted on all the training data.
    ``predict`` says positive where the (calibrated) positive probability is at least
    ``threshold_``.

    Parameters
    ----------
    estimator : classifier
        A binary classifier with ``predict_proba`` (e.g. a Pipeline of a scaler and a
        balanced logistic regression).
    n_splits : int, default=4
        Inner folds (lowered to the number of patients when there are fewer).
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Map fitted on the out-of-fold probabilities (Platt scaling on their logit, or
        isotonic regression) and applied by ``predict_proba``; the threshold is chosen on the
        calibrated probabilities. ``class_weight="balanced"`` shifts a model's
        probabilities; calibration maps them back to frequencies of the training patients.
    random_state : int, RandomState instance or None, default=0
        Seed of the inner folds.

    Attributes
    ----------
    estimator_ : classifier
        ``estimator`` refitted on all the training data.
    classes_ : ndarray of shape (2,)
        The classes.
    positive_class_, negative_class_ : label
        The roles of the classes (``skhybrid.class_roles``).
    threshold_ : float
        Decision threshold on the (calibrated) probability of ``positive_class_``.
    inner_balanced_accuracy_ : float
        Balanced accuracy of ``threshold_`` on the inner out-of-fold predictions.
    inner_balanced_accuracy_at_half_ : float
        The same at threshold 0.5, for comparison.
    inner_proba_ : ndarray of shape (n_samples,)
        The (calibrated) inner out-of-fold probabilities of the positive class.
    calibrator_ : estimator or None
        The fitted calibration map.

    Notes
    -----
    Why not :class:`~sklearn.model_selection.TunedThresholdClassifierCV` and
    :class:`~sklearn.calibration.CalibratedClassifierCV`? Both pass ``groups`` to their
    inner splitter only through metadata routing, a process-wide switch
    (``sklearn.set_config(enable_metadata_routing=True)``) that changes how every
    meta-estimator in the user's session accepts fit parameters; and used together each
    would refit the model on its own inner folds. This class takes ``groups`` as a plain
    ``fit`` argument (as :func:`skhybrid.evaluation.cross_validate_patients` passes it to a
    Pipeline's final step) and derives the calibration and the threshold from one set of
    out-of-fold predictions, with scikit-learn's ``cross_val_predict``, ``roc_curve``,
    ``LogisticRegression`` and ``IsotonicRegression`` doing the work.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "n_splits": [Interval(numbers.Integral, 2, None, closed="left")],
        "calibration": [StrOptions({"sigmoid", "isotonic"}), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator: Any,
        *,
        n_splits: int = 4,
        calibration: str | None = None,
        random_state: Any = 0,
    ) -> None:
        self.estimator = estimator
        self.n_splits = n_splits
        self.calibration = calibration
        self.random_state = random_state

    def _inner_splits(self, X: Any, y: np.ndarray, groups: Any) -> list:
        if groups is None:
            n_splits = min(
                self.n_splits, int(np.bincount(np.unique(y, return_inverse=True)[1]).min())
            )
            cv = StratifiedKFold(max(n_splits, 2), shuffle=True, random_state=self.random_state)
            return list(cv.split(np.zeros(len(y)), y))
        groups = np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError("PatientThresholdClassifier needs at least 2 patients in groups.")
        cv = StratifiedGroupKFold(
            min(self.n_splits, n_groups), shuffle=True, random_state=self.random_state
        )
        return list(cv.split(np.zeros(len(y)), y, groups))

    def _calibrate(self, proba: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return proba
        if self.calibration == "sigmoid":
            return self.calibrator_.predict_proba(_logit(proba)[:, None])[:, 1]
        return self.calibrator_.predict(proba)

    def fit(self, X: Any, y: Any, groups: Any = None) -> PatientThresholdClassifier:
        """Tune the threshold on inner patient-wise folds, then refit on all of ``X``.

        Parameters
        ----------
        X : array-like
            Training data (whatever ``estimator`` takes).
        y : array-like of shape (n_samples,)
            Binary labels.
        groups : array-like of shape (n_samples,), default=None
            Patient of each sample: the inner folds never split a patient.

        Returns
        -------
        self
        """
        self._validate_params()
        y = np.asarray(y)
        if type_of_target(y) != "binary":
            raise ValueError(
                f"PatientThresholdClassifier is for binary labels; got {type_of_target(y)!r}."
            )
        classes = np.unique(y)
        roles = resolve_class_roles(classes)
        self.classes_ = classes
        self.positive_class_, self.negative_class_ = roles.positive, roles.negative
        positive = y == self.positive_class_
        column = int(np.flatnonzero(classes == self.positive_class_)[0])

        splits = self._inner_splits(X, y, groups)
        raw = cross_val_predict(clone(self.estimator), X, y, cv=splits, method="predict_proba")
        raw = raw[:, column]
        self.calibrator_ = None
        if self.calibration == "sigmoid":
            # Platt scaling on the logit of the out-of-fold probabilities.
            self.calibrator_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], positive)
        elif self.calibration == "isotonic":
            self.calibrator_ = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(
                raw, positive
            )
        proba = self._calibrate(raw)

        # Every distinct score is a candidate; balanced accuracy = (TPR + TNR) / 2.
        fpr, tpr, thresholds = roc_curve(positive, proba, drop_intermediate=False)
        balanced = (tpr + 1 - fpr) / 2
        best = int(np.argmax(balanced[1:])) + 1  # index 0 is the "nothing positive" +inf
        # Midway to the next lower score: the same decisions on the inner data, a margin
        # on new data.
        lower = thresholds[best + 1] if best + 1 < len(thresholds) else 0.0
        self.threshold_ = float((thresholds[best] + lower) / 2)
        self.inner_proba_ = proba
        self.inner_balanced_accuracy_ = float(balanced[best])
        said = proba >= 0.5
        self.inner_balanced_accuracy_at_half_ = float(
            (said[positive].mean() + (~said[~positive]).mean()) / 2
        )
        self.estimator_ = clone(self.estimator).fit(X, y)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (calibrated when ``calibration`` is set), ``(n, 2)``."""
        check_is_fitted(self, "estimator_")
        column = int(np.flatnonzero(self.classes_ == self.positive_class_)[0])
        positive = self._calibrate(np.asarray(self.estimator_.predict_proba(X))[:, column])
        proba = np.empty((len(positive), 2))
        proba[:, column], proba[:, 1 - column] = positive, 1 - positive
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """``positive_class_`` where its probability is at least ``threshold_``."""
        check_is_fitted(self, "estimator_")
        column = int(np.flatnonzero(self.classes_ == self.positive_class_)[0])
        said = self.predict_proba(X)[:, column] >= self.threshold_
        return np.where(said, self.positive_class_, self.negative_class_).astype(
            self.classes_.dtype
        )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = clone(self.estimator).__sklearn_tags__()
        tags.input_tags = inner.input_tags
        return tags


# --------------------------------------------------------------------------- the recipes


def mean_over_tiles(features: np.ndarray) -> np.ndarray:
    """Average bag features ``(n, T, d)`` over their tiles to ``(n, d)`` (2-D passes through).

    A module-level function, so a Pipeline holding it in a ``FunctionTransformer`` pickles.
    """
    features = np.asarray(features)
    return features.mean(axis=1) if features.ndim == 3 else features


def mean_and_std_over_tiles(features: np.ndarray) -> np.ndarray:
    """Bag features ``(n, T, d)`` to ``(n, 2d)``: their mean and standard deviation over tiles.

    The spread says how uneven an image is (a malignant image with benign regions).
    """
    features = np.asarray(features)
    return np.hstack([features.mean(axis=1), features.std(axis=1)])


#: The names of :func:`make_recipe`, the default first.
RECIPES = ("recommended", "paper")

#: Step names of :func:`recommended_pipeline` (with ``texture=True``), as ``docs/results.md``
#: describes them.
RECOMMENDED_STEPS = ("features", "classifier")


def _balanced_lr(columns: Any, *, C: float, class_weight: Any, random_state: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = _columns(columns)
    logistic = LogisticRegression(
        C=C, class_weight=class_weight, max_iter=3000, random_state=random_state
    )
    return Pipeline([*steps, ("scale", StandardScaler()), ("logistic", logistic)])


def _columns(columns: Any) -> list[tuple[str, Any]]:
    from sklearn.compose import ColumnTransformer

    if columns is None:
        return []
    return [("columns", ColumnTransformer([("keep", "passthrough", columns)]))]


def _rbf_svm(columns: Any, *, C: float, class_weight: Any, random_state: Any) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # Platt probabilities of the SVM on internal folds, the replacement scikit-learn 1.9
    # gives for the deprecated SVC(probability=True).
    svm = CalibratedClassifierCV(SVC(C=C, class_weight=class_weight), ensemble=False)
    del random_state  # SVC is deterministic without probability=True
    return Pipeline([*_columns(columns), ("scale", StandardScaler()), ("svm", svm)])


def _boosting(columns: Any, *, C: float, class_weight: Any, random_state: Any) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    del C  # the regression's parameter; boosting is regularised by its learning rate
    boosting = HistGradientBoostingClassifier(
        class_weight=class_weight, max_iter=200, learning_rate=0.05, random_state=random_state
    )
    return Pipeline([*_columns(columns), ("boosting", boosting)])


#: The models :func:`recommended_pipeline` can put on the colour/texture features.
_TEXTURE_MODELS = {"logistic": _balanced_lr, "svm": _rbf_svm, "boosting": _boosting}


def recommended_pipeline(
    *,
    texture: bool = True,
    texture_model: str = "logistic+svm",
    texture_grid: tuple[int, int] | None = None,
    cnn: bool = False,
    backbone: Any = "efficientnet_lite0",
    weights: Any = "imagenet",
    grid: tuple[int, int] = (1, 1),
    tile_size: tuple[int, int] | None = None,
    threshold: bool = True,
    calibration: str | None = None,
    C: float = 1.0,
    class_weight: Any = "balanced",
    batch_size: int = 64,
    device: Any = "auto",
    random_state: Any = 0,
) -> Any:
    """The default recipe: the best measured on real BreakHis patches (``docs/results.md``).

    By default: the colour/texture statistics of
    :class:`~skhybrid.features.ColorTextureFeatures`, a soft vote of a scaled balanced
    logistic regression and a scaled balanced RBF support-vector machine, and a decision
    threshold tuned for balanced accuracy on inner patient-wise folds of the training data
    (:class:`PatientThresholdClassifier`). Fitting takes seconds on a CPU. On 3 x 4
    patient-wise folds of real 200X patches no deep candidate beat it (frozen ImageNet
    features alone or in the vote, test-time augmentation, stain normalisation); it beat the
    plain logistic regression only within the noise (balanced accuracy +0.010
    [-0.003, 0.022]). ``cnn=True`` adds the frozen ``efficientnet_lite0`` model to the vote,
    for data where it helps.

    Parameters
    ----------
    texture : bool, default=True
        Use the colour/texture model.
    texture_model : str, default="logistic+svm"
        The model(s) on the colour/texture features, joined by ``+`` and averaged (soft
        vote): ``"logistic"`` (scaled balanced logistic regression), ``"svm"`` (scaled
        balanced RBF support-vector machine, Platt probabilities), ``"boosting"``
        (balanced histogram gradient boosting).
    texture_grid : (rows, cols) or None, default=None
        Also describe the tiles of this grid (mean and spread over the tiles of their
        colour/texture statistics), next to the whole image's.
    cnn : bool, default=False
        Use a model on frozen CNN features (:class:`~skhybrid.estimators.CNNFeatureExtractor`);
        with ``texture`` too, the two probabilities are averaged (soft vote).
    backbone : str or nn.Module, default="efficientnet_lite0"
        CNN of the frozen features (ships ImageNet weights, offline).
    weights : "imagenet", None or path, default="imagenet"
        Its weights.
    grid : (rows, cols), default=(1, 1)
        Tiles per image for the CNN (:class:`~skhybrid.tiling.SubImageTiler`); their
        features are averaged.
    tile_size : (h, w) or None, default=None
        Resize each CNN tile to this size (``None`` keeps it).
    threshold : bool, default=True
        Tune the decision threshold on inner patient folds (pass ``groups`` to ``fit``);
        ``False`` decides at probability 0.5.
    calibration : {None, "sigmoid", "isotonic"}, default=None
        Probability calibration on the inner folds (with ``threshold=True``).
    C : float, default=1.0
        Inverse regularisation of the logistic regressions.
    class_weight : "balanced", None or dict, default="balanced"
        Of the logistic regressions.
    batch_size : int, default=64
        Images per forward pass of the CNN.
    device : str, default="auto"
        Where the CNN runs.
    random_state : int, RandomState instance or None, default=0
        Seed of the inner folds and of the logistic regressions.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``features`` (a :class:`~sklearn.pipeline.FeatureUnion` of ``texture``,
        ``texture_tiles`` when ``texture_grid`` is set, and ``cnn``: tiler, CNN features, mean
        over tiles, when ``cnn``) and ``classifier`` (a :class:`PatientThresholdClassifier`
        over the scaled balanced logistic regression, or over a soft
        :class:`~sklearn.ensemble.VotingClassifier` of the texture and CNN ones).
        ``fit(X, y, classifier__groups=patients)`` makes the inner folds patient-wise;
        :func:`skhybrid.evaluation.cross_validate_patients` passes them.

    Examples
    --------
    >>> from skhybrid.recipes import recommended_pipeline
    >>> model = recommended_pipeline()
    >>> [name for name, _ in model.steps]
    ['features', 'classifier']
    """
    from sklearn.ensemble import VotingClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from .features import ColorTextureFeatures
    from .tiling import SubImageTiler

    if not (texture or cnn):
        raise ValueError("recommended_pipeline needs texture=True or cnn=True.")
    unknown = set(texture_model.split("+")) - set(_TEXTURE_MODELS)
    if unknown:
        raise ValueError(
            f"texture_model takes {sorted(_TEXTURE_MODELS)} joined by '+', got {texture_model!r}."
        )
    blocks: list[tuple[str, Any]] = []
    n_texture = 0
    if texture:
        colour = ColorTextureFeatures()
        per_image = 10 + len(colour.dark_thresholds) + 2 + colour.n_bins
        blocks.append(("texture", colour))
        n_texture = per_image
        if texture_grid is not None:
            tiles = Pipeline(
                [
                    ("tiles", SubImageTiler(grid=texture_grid)),
                    ("describe", ColorTextureFeatures()),
                    ("pool", FunctionTransformer(mean_and_std_over_tiles)),
                ]
            )
            blocks.append(("texture_tiles", tiles))
            n_texture += 2 * per_image
    if cnn:
        from .estimators import CNNFeatureExtractor

        extractor = CNNFeatureExtractor(
            backbone, weights=weights, batch_size=batch_size, device=device
        )
        blocks.append(
            (
                "cnn",
                Pipeline(
                    [
                        ("tiles", SubImageTiler(grid=grid, tile_size=tile_size)),
                        ("extract", extractor),
                        ("pool", FunctionTransformer(mean_over_tiles)),
                    ]
                ),
            )
        )
    lr = {"C": C, "class_weight": class_weight, "random_state": random_state}
    texture_columns = slice(0, n_texture) if cnn else None
    members = [
        (name, _TEXTURE_MODELS[name](texture_columns, **lr))
        for name in (texture_model.split("+") if texture else [])
    ]
    if cnn:
        members.append(("cnn", _balanced_lr(slice(n_texture, None) if texture else None, **lr)))
    # One model as it is; several: the average of their probabilities (soft vote).
    model = members[0][1] if len(members) == 1 else VotingClassifier(members, voting="soft")
    classifier = (
        PatientThresholdClassifier(model, calibration=calibration, random_state=random_state)
        if threshold
        else model
    )
    return Pipeline([("features", FeatureUnion(blocks)), ("classifier", classifier)])


def paper_pipeline(
    *,
    grid: tuple[int, int] = (3, 3),
    tile_size: tuple[int, int] | None = (224, 224),
    self_learning_rounds: int = 4,
    random_state: Any = None,
    **classifier_params: Any,
) -> Any:
    """The paper's recipe: tiles, a hybrid CNN-LSTM, hierarchical self-learning.

    ``SubImageTiler(grid=(3, 3), tile_size=(224, 224))`` then, with
    ``self_learning_rounds > 0``, a :class:`~skhybrid.self_learning.SelfLearningRelabeler`
    around a :class:`~skhybrid.estimators.HybridCNNLSTMClassifier` with ``"mil"``
    aggregation (``"mean"`` without self-learning), as :func:`skhybrid.workflow.run_experiment`
    trains it. Training a network takes hours on a CPU; it was not run in the measurements of
    ``docs/results.md`` (CNNs trained on these patches scored below the colour/texture
    model in the earlier measurements quoted there).

    Parameters
    ----------
    grid, tile_size
        Of the tiler.
    self_learning_rounds : int, default=4
        Relabeling rounds (the paper's four); 0 trains on the inherited tile labels.
    random_state : int or None, default=None
        Seed of the classifier and the relabeler.
    **classifier_params
        Parameters of the classifier (``backbone``, ``weights``, ``max_epochs``, ...).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``tiles`` and ``clf``.
    """
    from sklearn.pipeline import Pipeline

    from .self_learning import SelfLearningRelabeler
    from .tiling import SubImageTiler
    from .workflow import default_aggregation, make_classifier

    params = {"aggregation": default_aggregation(self_learning_rounds), **classifier_params}
    classifier = make_classifier("hybrid", random_state=random_state, **params)
    if self_learning_rounds > 0:
        classifier = SelfLearningRelabeler(
            classifier, n_rounds=self_learning_rounds, random_state=random_state
        )
    return Pipeline([("tiles", SubImageTiler(grid=grid, tile_size=tile_size)), ("clf", classifier)])


def make_recipe(recipe: str = "recommended", **params: Any) -> Any:
    """:func:`recommended_pipeline` or :func:`paper_pipeline` by name (``RECIPES``).

    The command line's ``--recipe`` calls this.
    """
    if recipe not in RECIPES:
        from .exceptions import UserError

        raise UserError(f"recipe must be one of {RECIPES}, got {recipe!r}.")
    factory = recommended_pipeline if recipe == "recommended" else paper_pipeline
    return factory(**params)


def fit_recipe(model: Any, X: Any, y: Any, groups: Any = None) -> Any:
    """Fit a recipe, passing the patients to its final step when that step takes ``groups``.

    The recommended recipe's threshold is tuned on inner patient-wise folds and the paper's
    relabeler splits by patient; both need ``groups`` as a fit parameter of their final step
    (``classifier__groups`` / ``clf__groups``). The rule is the one
    :func:`skhybrid.evaluation.cross_validate_patients` applies.

    Parameters
    ----------
    model : estimator or Pipeline
        E.g. ``make_recipe("recommended")``.
    X, y
        Training images and labels.
    groups : array-like of shape (n_samples,), default=None
        Patient of each image.

    Returns
    -------
    model
        The fitted ``model``.
    """
    from .evaluation import _fit_params

    params = {} if groups is None else _fit_params(model, np.asarray(groups))
    return model.fit(X, y, **params)
