"""Tests of SelfLearningRelabeler and its default rule, against make_histology's tile truth."""

from __future__ import annotations

import functools
import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_estimator,
    check_estimator_cloneable,
    check_estimator_repr,
    check_estimator_tags_renamed,
    check_get_params_invariance,
    check_mixin_order,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    check_valid_tag_types,
)
from threadpoolctl import threadpool_limits

from skhybrid.datasets import make_histology
from skhybrid.features import ColorTextureFeatures
from skhybrid.reporting import format_self_learning_history
from skhybrid.self_learning import SelfLearningRelabeler, relabel_positive_tiles
from skhybrid.tiling import SubImageTiler


@pytest.fixture(scope="module", autouse=True)
def _single_blas_thread():
    """Tiny linear models run ~10x slower with several BLAS threads on a busy 2-core machine."""
    with threadpool_limits(limits=1):
        yield


# -- data -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def histology():
    """90 synthetic images, 3x3 tiles, ~40% benign tiles in malignant images."""
    data = make_histology(
        90, image_size=(96, 144), benign_tile_fraction=0.4, difficulty=0.3, random_state=0
    )
    data.bags = SubImageTiler(grid=(3, 3)).fit_transform(data.images)
    data.features = ColorTextureFeatures().fit_transform(data.bags)
    return data


def _linear() -> LogisticRegression:
    return make_pipeline(StandardScaler(), LogisticRegression())


def _image_pipeline():
    """The inner estimator of the docs: tile features + logistic regression on raw tiles."""
    return make_pipeline(ColorTextureFeatures(), StandardScaler(), LogisticRegression())


def _tile_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(labels == truth))


# -- the rule alone, on hand-made probabilities ---------------------------------------------------
def _proba(p_negative: list[list[float]]) -> np.ndarray:
    p = np.asarray(p_negative, dtype=float)
    return np.stack([p, 1 - p], axis=-1)


def test_rule_exact_labels():
    labels = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    p_negative = [
        [0.99, 0.99, 0.99, 0.99],  # negative image: never changes, whatever the model says
        [0.9, 0.5, 0.51, 0.2],  # 0.5 is not *above* the threshold
        [0.1, 0.2, 0.3, 0.4],
    ]
    new = relabel_positive_tiles(labels, [0, 1, 1], _proba(p_negative), [0, 1], negative_class=0)
    np.testing.assert_array_equal(new, [[0, 0, 0, 0], [0, 1, 0, 1], [1, 1, 1, 1]])


def test_rule_keeps_the_most_positive_tiles():
    labels = np.ones((2, 4), dtype=int)
    p_negative = [[0.9, 0.7, 0.95, 0.8], [0.6, 0.6, 0.6, 0.6]]
    rule = functools.partial(relabel_positive_tiles, negative_class=0, threshold=0.5)
    np.testing.assert_array_equal(
        rule(labels, [1, 1], _proba(p_negative), [0, 1], min_positive_tiles=1),
        [[0, 1, 0, 0], [1, 0, 0, 0]],  # ties go to the earlier tile
    )
    np.testing.assert_array_equal(
        rule(labels, [1, 1], _proba(p_negative), [0, 1], min_positive_tiles=2),
        [[0, 1, 0, 1], [1, 1, 0, 0]],
    )


def test_rule_flip_back_or_monotone():
    current = np.array([[0, 0, 1, 1]])  # tiles 0 and 1 went negative in an earlier round
    p_negative = [[0.2, 0.9, 0.3, 0.95]]  # tile 0 now looks positive again
    args = (current, [1], _proba(p_negative), [0, 1])
    np.testing.assert_array_equal(
        relabel_positive_tiles(*args, negative_class=0, allow_flip_back=True), [[1, 0, 1, 0]]
    )
    np.testing.assert_array_equal(
        relabel_positive_tiles(*args, negative_class=0, allow_flip_back=False), [[0, 0, 1, 0]]
    )
    # Monotone: the kept positive tile must be a still-positive one, even if a negative one
    # now looks more positive.
    all_negative_looking = _proba([[0.1, 0.9, 0.8, 0.95]])
    np.testing.assert_array_equal(
        relabel_positive_tiles(
            current, [1], all_negative_looking, [0, 1], negative_class=0, allow_flip_back=False
        ),
        [[0, 0, 1, 0]],
    )


def test_rule_string_labels_multiclass_and_inputs_unchanged():
    classes = np.array(["benign", "ductal", "lobular"])
    image_labels = np.array(["benign", "ductal", "lobular"])
    labels = np.repeat(image_labels[:, None], 3, axis=1)
    proba = np.array(
        [
            [[0.1, 0.8, 0.1]] * 3,
            [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3]],
            [[0.9, 0.0, 0.1], [0.8, 0.1, 0.1], [0.6, 0.1, 0.3]],
        ]
    )
    before = (labels.copy(), image_labels.copy(), proba.copy())
    new = relabel_positive_tiles(labels, image_labels, proba, classes, negative_class="benign")
    np.testing.assert_array_equal(
        new,
        [
            ["benign"] * 3,
            ["benign", "ductal", "ductal"],
            ["benign", "benign", "lobular"],
        ],
    )
    for original, after in zip(before, (labels, image_labels, proba)):
        np.testing.assert_array_equal(original, after)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"negative_class": 2}, "not one of the classes"),
        ({"negative_class": 0, "threshold": 1.0}, "threshold"),
        ({"negative_class": 0, "min_positive_tiles": 5}, "min_positive_tiles"),
    ],
)
def test_rule_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relabel_positive_tiles(np.ones((1, 4), int), [1], _proba([[0.5] * 4]), [0, 1], **kwargs)


# -- the relabeler on make_histology --------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_on_images(histology):
    """Relabeler on raw uint8 tiles with ColorTextureFeatures + LogisticRegression inside."""
    relabeler = SelfLearningRelabeler(_image_pipeline(), n_rounds=4, random_state=0)
    return relabeler.fit(histology.bags, histology.target, groups=histology.patient)


def test_tile_accuracy_rises_over_rounds(histology, fitted_on_images):
    truth = histology.tile_target
    accuracy = [_tile_accuracy(labels, truth) for labels in fitted_on_images.tile_label_history_]
    assert accuracy[0] == pytest.approx(
        1 - (histology.target == 1).sum() * 9 * 0.4 / truth.size, abs=0.06
    )
    assert accuracy[1] > accuracy[0] + 0.05
    assert accuracy[-1] >= max(accuracy) - 0.01  # no drift back down
    assert accuracy[-1] > 0.95
    assert accuracy[-1] > accuracy[0] + 0.1
    np.testing.assert_array_equal(
        fitted_on_images.tile_labels_, fitted_on_images.tile_label_history_[-1]
    )
    # Benign tiles of malignant images are recovered, malignant tiles kept.
    malignant = histology.target == 1
    recovered = fitted_on_images.tile_labels_[malignant] == 0
    truly_benign = truth[malignant] == 0
    assert recovered[truly_benign].mean() > 0.9
    assert (~recovered[~truly_benign]).mean() > 0.9


def test_invariants_hold_in_every_round(histology, fitted_on_images):
    benign_images = histology.target == 0
    for labels in fitted_on_images.tile_label_history_:
        assert (labels[benign_images] == 0).all()
        assert ((labels[~benign_images] == 1).sum(axis=1) >= 1).all()
        assert np.isin(labels[~benign_images], [0, 1]).all()


def test_min_positive_tiles_is_respected(histology):
    relabeler = SelfLearningRelabeler(
        _linear(), n_rounds=3, min_positive_tiles=3, threshold=0.2, random_state=0
    )
    relabeler.fit(histology.features, histology.target)
    malignant = histology.target == 1
    positives = (relabeler.tile_labels_[malignant] == 1).sum(axis=1)
    assert positives.min() >= 3
    # Images with fewer than 3 truly malignant tiles would lose more: the rule stops them at 3.
    few_malignant = (histology.tile_target[malignant] == 1).sum(axis=1) < 3
    assert few_malignant.sum() >= 3
    assert (positives[few_malignant] == 3).mean() > 0.8


def test_history_counts_and_table(histology, fitted_on_images):
    history = fitted_on_images.history_
    n_tiles = histology.tile_target.size
    assert history[0]["round"] == 0 and history[0]["n_relabeled"] == 0
    assert history[0]["class_counts"] == {
        0: int((histology.target == 0).sum() * 9),
        1: int((histology.target == 1).sum() * 9),
    }
    assert len(history) == fitted_on_images.n_rounds_ + 1
    assert fitted_on_images.tile_label_history_.shape == (
        len(history),
        *histology.tile_target.shape,
    )
    for before, after, entry in zip(
        fitted_on_images.tile_label_history_, fitted_on_images.tile_label_history_[1:], history[1:]
    ):
        assert sum(entry["class_counts"].values()) == n_tiles
        assert entry["n_relabeled"] == int((before != after).sum())
        assert entry["n_relabeled"] == entry["n_to_negative"] + entry["n_to_positive"]
        assert entry["class_counts"][0] == int((after == 0).sum())
    assert fitted_on_images.termination_condition_ in {"max_rounds", "no_change"}
    if fitted_on_images.termination_condition_ == "no_change":
        assert history[-1]["n_relabeled"] == 0
    else:
        assert fitted_on_images.n_rounds_ == 4

    table = format_self_learning_history(fitted_on_images, tile_truth=histology.tile_target)
    lines = table.splitlines()
    assert lines[0].startswith("| Round | 0 | 1 | Relabeled") and "Tile accuracy" in lines[0]
    assert len(lines) == 2 + len(history)
    assert lines[2].startswith(f"| 0 (inherited) | {history[0]['class_counts'][0]} |")
    final_accuracy = _tile_accuracy(fitted_on_images.tile_labels_, histology.tile_target)
    assert lines[-1].endswith(f"| {final_accuracy:.3f} |")


def test_stops_when_nothing_changes(histology):
    def keep(tile_labels, image_labels, oof_proba, classes):
        return tile_labels

    relabeler = SelfLearningRelabeler(_linear(), n_rounds=4, rule=keep, random_state=0)
    relabeler.fit(histology.features, histology.target)
    assert relabeler.termination_condition_ == "no_change"
    assert relabeler.n_rounds_ == 1
    assert relabeler.oof_proba_.shape == (*histology.tile_target.shape, 2)

    zero = SelfLearningRelabeler(_linear(), n_rounds=0).fit(histology.features, histology.target)
    assert zero.n_rounds_ == 0 and zero.termination_condition_ == "max_rounds"
    assert zero.oof_proba_ is None
    np.testing.assert_array_equal(zero.tile_labels_, np.repeat(histology.target[:, None], 9, 1))


def test_flip_back_is_at_least_as_accurate_as_monotone(histology):
    """A false early correction can be undone only with flip-back; it must not cost accuracy."""
    truth = histology.tile_target
    accuracy = {}
    for allow in (True, False):
        relabeler = SelfLearningRelabeler(
            _linear(), n_rounds=4, allow_flip_back=allow, random_state=0
        ).fit(histology.features, histology.target)
        history = relabeler.tile_label_history_
        if not allow:  # labels only ever move towards the negative class
            assert all((b[a == 1] == 1).all() for a, b in zip(history[1:], history))
        accuracy[allow] = _tile_accuracy(relabeler.tile_labels_, truth)
    assert accuracy[True] >= accuracy[False] - 0.005


def test_image_level_accuracy_is_not_hurt(histology):
    """Patient-wise CV: relabeling + top-k aggregation vs the inherited-label tile model with
    mean aggregation (the usual way to score an image from its tiles)."""
    X, y = histology.features, histology.target
    relabeled_scores, baseline_scores, relabeled_acc, baseline_acc = [], [], [], []
    for train, test in GroupKFold(n_splits=3).split(X, y, histology.patient):
        relabeler = SelfLearningRelabeler(_linear(), random_state=0)
        relabeler.fit(X[train], y[train], groups=histology.patient[train])
        relabeled_scores.append(roc_auc_score(y[test], relabeler.predict_proba(X[test])[:, 1]))
        relabeled_acc.append(relabeler.score(X[test], y[test]))
        baseline = _linear().fit(X[train].reshape(-1, X.shape[-1]), np.repeat(y[train], 9))
        p_tiles = baseline.predict_proba(X[test].reshape(-1, X.shape[-1]))[:, 1]
        p_image = p_tiles.reshape(-1, 9).mean(axis=1)
        baseline_scores.append(roc_auc_score(y[test], p_image))
        baseline_acc.append(np.mean((p_image > 0.5) == y[test]))
    assert np.mean(relabeled_scores) >= np.mean(baseline_scores) - 0.01
    assert np.mean(relabeled_acc) >= np.mean(baseline_acc) - 0.02
    assert np.mean(relabeled_acc) > 0.85


# -- predictions ----------------------------------------------------------------------------------
def test_prediction_shapes_and_aggregation(histology, fitted_on_images):
    bags = histology.bags[:10]
    tile_proba = fitted_on_images.predict_proba_tiles(bags)
    assert tile_proba.shape == (10, 9, 2)
    np.testing.assert_allclose(tile_proba.sum(axis=-1), 1.0)
    assert fitted_on_images.predict_tiles(bags).shape == (10, 9)
    proba = fitted_on_images.predict_proba(bags)
    np.testing.assert_allclose(proba[:, 1], tile_proba[..., 1].max(axis=1))  # k = 1
    np.testing.assert_array_equal(
        fitted_on_images.predict(bags), fitted_on_images.classes_[proba.argmax(axis=1)]
    )
    np.testing.assert_allclose(fitted_on_images.predict_log_proba(bags), np.log(proba))
    decision = fitted_on_images.decision_function(bags)
    assert decision.shape == (10,)
    np.testing.assert_array_equal(decision > 0, proba[:, 1] > 0.5)


def test_top_k_aggregation(histology):
    relabeler = SelfLearningRelabeler(_linear(), n_rounds=1, min_positive_tiles=3, random_state=0)
    relabeler.fit(histology.features, histology.target)
    tile_p = relabeler.predict_proba_tiles(histology.features)[..., 1]
    expected = np.sort(tile_p, axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(relabeler.predict_proba(histology.features)[:, 1], expected)
    tile_scores = relabeler.estimator_.decision_function(
        histology.features.reshape(-1, histology.features.shape[-1])
    ).reshape(-1, 9)
    np.testing.assert_allclose(
        relabeler.decision_function(histology.features),
        np.sort(tile_scores, axis=1)[:, -3:].mean(axis=1),
        rtol=1e-5,
    )


def test_string_labels_and_explicit_negative_class(histology):
    names = np.array(["benign", "malignant"])[histology.target]
    as_int = SelfLearningRelabeler(_linear(), n_rounds=2, random_state=0)
    as_str = SelfLearningRelabeler(_linear(), n_rounds=2, random_state=0)
    as_int.fit(histology.features, histology.target)
    as_str.fit(histology.features, names)
    assert as_str.negative_class_ == "benign"
    np.testing.assert_array_equal(as_str.classes_, ["benign", "malignant"])
    np.testing.assert_array_equal(
        as_str.tile_labels_, np.array(["benign", "malignant"])[as_int.tile_labels_]
    )
    assert set(as_str.predict(histology.features[:5])) <= {"benign", "malignant"}
    assert "benign" in as_str.history_[-1]["class_counts"]

    # Swapping the roles: with negative_class=1 only tiles of class-0 images may change.
    swapped = SelfLearningRelabeler(_linear(), n_rounds=1, negative_class=1, random_state=0)
    swapped.fit(histology.features, histology.target)
    assert (swapped.tile_labels_[histology.target == 1] == 1).all()


@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.array(["a", "b"]), "negative_class="), (np.array(["x1", "x2"]), "negative_class=")],
)
def test_negative_class_must_be_given_when_ambiguous(histology, labels, match):
    # Numbers follow scikit-learn's convention ({1, 2}: 1 is negative); only unknown names
    # are ambiguous (skhybrid.class_roles).
    y = labels[histology.target]
    with pytest.raises(ValueError, match=match):
        SelfLearningRelabeler(_linear()).fit(histology.features, y)
    fitted = SelfLearningRelabeler(_linear(), n_rounds=1, negative_class=labels[0])
    assert fitted.fit(histology.features, y).negative_class_ == labels[0]


def test_custom_multiclass_rule(histology):
    # Malignant subtypes that fall back to benign: the general rule passed explicitly and the
    # default rule (which, since k-class support, finds the negative class "benign" by name)
    # give the same tile labels.
    rng = np.random.default_rng(0)
    subtype = np.where(histology.target == 1, rng.choice(["ductal", "lobular"], 90), "benign")
    default = SelfLearningRelabeler(_linear(), n_rounds=3, random_state=0)
    default.fit(histology.features, subtype)
    assert default.negative_class_ == "benign"
    np.testing.assert_array_equal(default.negative_classes_, ["benign"])
    rule = functools.partial(relabel_positive_tiles, negative_class="benign", threshold=0.5)
    relabeler = SelfLearningRelabeler(_linear(), n_rounds=3, rule=rule, random_state=0)
    relabeler.fit(histology.features, subtype)
    np.testing.assert_array_equal(default.tile_labels_, relabeler.tile_labels_)
    is_benign_tile = relabeler.tile_labels_ == "benign"
    assert _tile_accuracy(~is_benign_tile, histology.tile_target == 1) > 0.9
    assert relabeler.predict_proba(histology.features).shape == (90, 3)
    assert pickle.loads(pickle.dumps(relabeler)).tile_labels_.shape == (90, 9)


@pytest.mark.parametrize(
    ("bad_rule", "match"),
    [
        (lambda t, y, p, c: np.zeros_like(t), "negative .* images|own label"),
        (lambda t, y, p, c: np.where(y[:, None] == 0, 1, t), "changed tiles of negative"),
        (lambda t, y, p, c: np.where(y[:, None] == 1, 0, t), "fewer than min_positive_tiles"),
        (lambda t, y, p, c: np.full_like(t, 7), "not among the classes"),
        (lambda t, y, p, c: t[:, :3], "shape"),
    ],
)
def test_invariants_are_checked_after_a_user_rule(histology, bad_rule, match):
    relabeler = SelfLearningRelabeler(_linear(), n_rounds=1, rule=bad_rule, random_state=0)
    with pytest.raises(ValueError, match=match):
        relabeler.fit(histology.features, histology.target)


def test_user_rule_cannot_corrupt_state_by_writing_its_arguments(histology):
    def vandal(tile_labels, image_labels, oof_proba, classes):
        result = tile_labels.copy()
        tile_labels[:] = 1
        image_labels[:] = 1
        classes[:] = 5
        return result

    relabeler = SelfLearningRelabeler(_linear(), n_rounds=2, rule=vandal, random_state=0)
    relabeler.fit(histology.features, histology.target)
    np.testing.assert_array_equal(relabeler.classes_, [0, 1])
    np.testing.assert_array_equal(relabeler.tile_labels_[:, 0], histology.target)


# -- inputs, groups, validation -------------------------------------------------------------------
def test_inputs_are_never_modified(histology):
    bags, y, groups = histology.bags[:45], histology.target[:45], histology.patient[:45]
    copies = (bags.copy(), y.copy(), groups.copy())
    relabeler = SelfLearningRelabeler(_image_pipeline(), n_rounds=2, cv=3, random_state=0)
    relabeler.fit(bags, y, groups=groups)
    relabeler.predict_proba(bags)
    relabeler.predict_tiles(bags)
    for original, after in zip(copies, (bags, y, groups)):
        np.testing.assert_array_equal(original, after)
    assert not np.shares_memory(relabeler.tile_labels_, y)


_FIT_GROUPS: list = []  # module-level: clone deep-copies parameters, so a log list would be lost


class _GroupRecorder(ClassifierMixin, BaseEstimator):
    """Logistic regression that records the groups its fit receives."""

    def fit(self, X, y, groups=None):
        _FIT_GROUPS.append(groups)
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


def test_groups_reach_the_split_and_the_inner_fit(histology):
    log = _FIT_GROUPS
    log.clear()
    relabeler = SelfLearningRelabeler(_GroupRecorder(), n_rounds=1, cv=3, random_state=0)
    X = histology.features.reshape(90, 9, -1)
    relabeler.fit(X, histology.target, groups=histology.patient)
    assert len(log) == 3 + 1  # one clone per fold, then the final refit
    all_patients = set(histology.patient)
    tile_patients = np.repeat(histology.patient, 9)
    np.testing.assert_array_equal(log[-1], tile_patients)
    held_out = [all_patients - set(groups) for groups in log[:3]]
    # Each fold leaves out whole patients, and together the folds leave out every patient once.
    assert sorted(p for fold in held_out for p in fold) == sorted(all_patients)

    # Without groups, the image index is the group.
    log.clear()
    relabeler.fit(X, histology.target)
    np.testing.assert_array_equal(log[-1], np.repeat(np.arange(90), 9))


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored by KFold")
def test_splitter_that_breaks_groups_is_rejected(histology):
    relabeler = SelfLearningRelabeler(_linear(), cv=KFold(3, shuffle=True, random_state=0))
    with pytest.raises(ValueError, match="both sides"):
        relabeler.fit(histology.features, histology.target)
    grouped = SelfLearningRelabeler(_linear(), n_rounds=1, cv=GroupKFold(3))
    assert grouped.fit(histology.features, histology.target).n_rounds_ == 1


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"n_rounds": -1}, ValueError, "n_rounds"),
        ({"n_rounds": 1.5}, ValueError, "n_rounds"),
        ({"threshold": 0.0}, ValueError, "threshold"),
        ({"threshold": 1.0}, ValueError, "threshold"),
        ({"min_positive_tiles": 0}, ValueError, "min_positive_tiles"),
        ({"min_positive_tiles": 10}, ValueError, "exceeds the 9 tiles"),
        ({"cv": 1}, ValueError, "cv"),
        ({"cv": 100}, ValueError, "at least 100 images"),
        ({"estimator": LinearSVC()}, TypeError, "predict_proba"),
        ({"rule": "strict"}, TypeError, "rule"),
    ],
)
def test_validation_happens_in_fit(histology, params, error, match):
    params = {"estimator": _linear(), **params}
    relabeler = SelfLearningRelabeler(**params)  # __init__ only stores
    with pytest.raises(error, match=match):
        relabeler.fit(histology.features, histology.target)


def test_input_validation(histology):
    relabeler = SelfLearningRelabeler(_linear())
    with pytest.raises(ValueError, match="per-tile axis"):
        relabeler.fit(histology.features[..., 0], histology.target)
    with pytest.raises(ValueError, match="one label per image"):
        relabeler.fit(histology.features, histology.tile_target)
    with pytest.raises(ValueError, match="90 images but y has 89"):
        relabeler.fit(histology.features, histology.target[:89])
    with pytest.raises(ValueError, match="1 class"):
        relabeler.fit(histology.features, np.ones(90, int))
    with pytest.raises(ValueError, match="groups"):
        relabeler.fit(histology.features, histology.target, groups=np.arange(5))
    with pytest.raises(TypeError, match="[Ss]parse"):
        relabeler.fit(sp.csr_matrix(np.ones((3, 3))), [0, 1, 1])
    with pytest.raises(NotFittedError):
        relabeler.predict(histology.features)
    fitted = SelfLearningRelabeler(_linear(), n_rounds=0).fit(histology.features, histology.target)
    with pytest.raises(ValueError, match="dimensions"):
        fitted.predict(histology.bags)


# -- scikit-learn API -----------------------------------------------------------------------------
def test_methods_exist_only_when_the_estimator_has_them(histology):
    forest = SelfLearningRelabeler(RandomForestClassifier(n_estimators=5, random_state=0))
    assert not hasattr(forest, "decision_function")
    assert hasattr(forest, "predict_proba") and hasattr(forest, "predict_tiles")
    forest.set_params(n_rounds=1, random_state=0).fit(histology.features, histology.target)
    assert not hasattr(forest, "decision_function")
    assert hasattr(SelfLearningRelabeler(LogisticRegression()), "decision_function")


def test_clone_pickle_joblib(histology, fitted_on_images, tmp_path):
    params = fitted_on_images.get_params(deep=False)
    cloned = clone(fitted_on_images)
    assert not hasattr(cloned, "estimator_")
    assert cloned.get_params(deep=False).keys() == params.keys()
    assert cloned.set_params(threshold=0.7).threshold == 0.7
    assert "estimator__logisticregression__C" in fitted_on_images.get_params()

    path = tmp_path / "relabeler.joblib"
    joblib.dump(fitted_on_images, path)
    restored = joblib.load(path)
    bags = histology.bags[:8]
    np.testing.assert_array_equal(
        restored.predict_proba(bags), fitted_on_images.predict_proba(bags)
    )
    np.testing.assert_array_equal(restored.tile_labels_, fitted_on_images.tile_labels_)
    again = pickle.loads(pickle.dumps(fitted_on_images))
    assert format_self_learning_history(again) == format_self_learning_history(fitted_on_images)


def test_fit_is_deterministic_with_random_state(histology):
    first = SelfLearningRelabeler(_linear(), random_state=3).fit(
        histology.features, histology.target
    )
    second = clone(first).fit(histology.features, histology.target)
    np.testing.assert_array_equal(first.tile_label_history_, second.tile_label_history_)
    assert first.history_ == second.history_


def test_grid_search_over_relabeler_parameters(histology):
    search = GridSearchCV(
        SelfLearningRelabeler(_linear(), n_rounds=2, cv=3, random_state=0),
        {"threshold": [0.5, 0.8], "estimator__logisticregression__C": [0.1, 1.0]},
        cv=GroupKFold(n_splits=3),
        scoring="roc_auc",
    )
    search.fit(histology.features, histology.target, groups=histology.patient)
    assert search.best_score_ > 0.9
    assert search.best_estimator_.tile_labels_.shape == (90, 9)


def test_verbose_progress(histology, capsys):
    SelfLearningRelabeler(_linear(), n_rounds=2, verbose=1, random_state=0).fit(
        histology.features, histology.target
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == 2
    assert (
        lines[0].startswith("[SelfLearningRelabeler] round 1/2:") and "tiles relabeled" in lines[0]
    )
    SelfLearningRelabeler(_linear(), n_rounds=1, verbose=2, random_state=0).fit(
        histology.features, histology.target
    )
    captured = capsys.readouterr()
    assert "round 1/1" in captured.out and "folds" in captured.err  # tqdm writes to stderr


# -- scikit-learn's estimator checks --------------------------------------------------------------
@pytest.mark.parametrize(
    "check",
    [
        check_parameters_default_constructible,
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_estimator_repr,
        check_estimator_cloneable,
        check_estimator_tags_renamed,
        check_valid_tag_types,
        check_mixin_order,
        check_do_not_raise_errors_in_init_or_set_params,
    ],
)
def test_sklearn_checks_on_the_relabeler(check):
    """The data-independent checks, on SelfLearningRelabeler itself."""
    estimator = SelfLearningRelabeler(LogisticRegression())
    check(type(estimator).__name__, estimator)


def _keep_labels(tile_labels, image_labels, oof_proba, classes):
    return tile_labels


class _TabularRelabeler(SelfLearningRelabeler):
    """2-D adapter: each row is a bag of one tile ``(n, d) -> (n, 1, d)``.

    With one tile per bag the hierarchy is trivial (a positive image keeps its only tile), so
    the relabeling plumbing (folds, rounds, refit, aggregation, validation, pickling) runs
    on scikit-learn's generic data. The checks use arbitrary label sets ([1, 2], ['one', 'two'],
    floats, 3 classes), so the adapter takes the first class as negative and keeps tile
    labels unchanged (the default rule needs the negative classes of three numeric labels).
    """

    @staticmethod
    def _as_bags(X):
        if sp.issparse(X):
            return X  # let the relabeler reject it
        X = np.asarray(X)
        return X[:, np.newaxis] if X.ndim == 2 else X

    def _resolve_negative_classes(self, classes):
        return classes[:1]

    def fit(self, X, y, groups=None):
        super().fit(self._as_bags(X), y, groups)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def _flat_tiles(self, bags):
        return super()._flat_tiles(self._as_bags(bags))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.three_d_array = False
        return tags


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # check_estimators_dtypes casts NaN
def test_sklearn_check_estimator_through_a_2d_adapter():
    """All of scikit-learn's check_estimator, through the one-tile-per-bag adapter.

    Checks that do not apply to SelfLearningRelabeler itself, and why:

    - every check that feeds 2-D ``X`` (``check_fit2d_*``, ``check_classifiers_train``,
      ``check_estimators_dtypes``, ``check_methods_*_invariance``, ...): bags are
      ``(n, T, ...)``; they run here through the adapter instead;
    - the checks on arbitrary label sets need ``negative_class`` (there is no ``'benign'``
      or 0 in ``[1, 2]``) and, with three classes, a custom rule: the adapter supplies both;
    - ``check_n_features_in*``: bags have no feature count; the adapter sets it;
    - pandas and array-API checks: skipped by scikit-learn when those are not installed.
    """
    estimator = _TabularRelabeler(
        LogisticRegression(), n_rounds=2, rule=_keep_labels, cv=2, random_state=0
    )
    results = check_estimator(estimator, on_fail=None, on_skip=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 50


def test_format_history_moved_to_reporting_and_warns(fitted_on_images, histology):
    """The Markdown renderer lives in skhybrid.reporting; the old method still works."""
    new = format_self_learning_history(fitted_on_images, tile_truth=histology.tile_target)
    with pytest.warns(FutureWarning, match="format_self_learning_history"):
        old = fitted_on_images.format_history(tile_truth=histology.tile_target)
    assert old == new and "Tile accuracy" in new
    with pytest.warns(FutureWarning):
        assert fitted_on_images.format_history() == format_self_learning_history(fitted_on_images)
    with pytest.raises(ValueError, match="tile_truth must have shape"):
        format_self_learning_history(fitted_on_images, tile_truth=histology.tile_target[:2])


def test_a_relabeler_pickled_before_negative_classes_still_predicts(histology, fitted_on_images):
    # Simulate a pickle from before k-class support: no negative_classes parameter, no
    # negative_classes_ attribute.
    state = dict(fitted_on_images.__getstate__())  # a copy: it may be the __dict__ itself
    del state["negative_classes"], state["negative_classes_"]
    old = SelfLearningRelabeler.__new__(SelfLearningRelabeler)
    old.__setstate__(state)
    np.testing.assert_array_equal(old.negative_classes_, [fitted_on_images.negative_class_])
    assert old.get_params()["negative_classes"] is None
    np.testing.assert_array_equal(
        old.predict_proba(histology.bags), fitted_on_images.predict_proba(histology.bags)
    )
