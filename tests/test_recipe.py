"""The calibrated decision (PatientThresholdClassifier) and the recipe factories."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion
from sklearn.utils._param_validation import InvalidParameterError

from skhybrid.recipes import (
    RECIPES,
    RECOMMENDED_STEPS,
    PatientThresholdClassifier,
    fit_recipe,
    make_recipe,
    paper_pipeline,
    recommended_pipeline,
)


def _imbalanced(n: int = 240, seed: int = 0):
    """One informative feature, 3:1 classes, 24 patients: 0.5 is not the best threshold."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(n) < 0.75, "malignant", "benign")
    x = rng.normal(size=n) + 1.2 * (y == "malignant")
    groups = np.repeat(np.arange(24), n // 24)
    rng.shuffle(groups)
    return np.c_[x, rng.normal(size=n)], y, groups


class _Recording(ClassifierMixin, BaseEstimator):
    """Logistic regression on columns 1: that records the ids (column 0) it was fitted on."""

    fitted_on: list = []  # noqa: RUF012 - shared on purpose, across clones

    def fit(self, X, y):
        type(self).fitted_on.append(set(X[:, 0].tolist()))
        self.model_ = LogisticRegression().fit(X[:, 1:], y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X[:, 1:])

    def predict(self, X):
        return self.model_.predict(X[:, 1:])


def test_threshold_is_chosen_on_inner_out_of_fold_predictions_of_the_training_patients():
    X, y, groups = _imbalanced()
    train = groups < 18  # the test patients (18..23) are not passed to fit
    model = PatientThresholdClassifier(LogisticRegression(), random_state=0)
    model.fit(X[train], y[train], groups=groups[train])
    # the inner predictions are out-of-fold, on patient-wise folds of the training data only
    splits = StratifiedGroupKFold(4, shuffle=True, random_state=0).split(
        X[train], y[train], groups[train]
    )
    oof = cross_val_predict(
        LogisticRegression(), X[train], y[train], cv=list(splits), method="predict_proba"
    )
    assert model.inner_proba_.shape == (train.sum(),)
    np.testing.assert_allclose(model.inner_proba_, oof[:, 1])
    in_sample = model.estimator_.predict_proba(X[train])[:, 1]
    assert not np.allclose(model.inner_proba_, in_sample)
    # the threshold maximises balanced accuracy on those inner predictions
    said = np.where(model.inner_proba_ >= model.threshold_, "malignant", "benign")
    achieved = balanced_accuracy_score(y[train], said)
    assert achieved == pytest.approx(model.inner_balanced_accuracy_)
    grid = np.linspace(0, 1, 1001)
    best_on_grid = max(
        balanced_accuracy_score(y[train], np.where(model.inner_proba_ >= t, "malignant", "benign"))
        for t in grid
    )
    assert achieved >= best_on_grid - 1e-9
    assert model.inner_balanced_accuracy_ >= model.inner_balanced_accuracy_at_half_
    # with 3:1 classes an unweighted model's best threshold lies well above 0.5
    assert model.threshold_ > 0.55


def test_inner_folds_never_split_a_patient():
    X, y, groups = _imbalanced()
    ids = np.arange(len(y))
    _Recording.fitted_on = []
    PatientThresholdClassifier(_Recording(), n_splits=4).fit(np.c_[ids, X], y, groups=groups)
    inner, final = _Recording.fitted_on[:-1], _Recording.fitted_on[-1]
    assert len(inner) == 4 and final == set(ids.tolist())
    for fitted in inner:
        fitted = np.array(sorted(fitted), dtype=int)
        held_out = np.setdiff1d(ids, fitted)
        assert len(held_out) > 0
        assert not set(groups[held_out]) & set(groups[fitted])


def test_predict_applies_the_threshold_not_one_half():
    X, y, groups = _imbalanced()
    model = PatientThresholdClassifier(LogisticRegression()).fit(X, y, groups=groups)
    positive = model.predict_proba(X)[:, list(model.classes_).index("malignant")]
    expected = np.where(positive >= model.threshold_, "malignant", "benign")
    np.testing.assert_array_equal(model.predict(X), expected)
    at_half = model.estimator_.predict(X)
    changed = model.predict(X) != at_half
    assert changed.any()
    # every change is a sample between 0.5 and the tuned threshold, now called benign
    assert np.all((positive[changed] >= 0.5) & (positive[changed] < model.threshold_))
    # and the tuned decision is better balanced on these (training) data than 0.5's
    assert balanced_accuracy_score(y, model.predict(X)) > balanced_accuracy_score(y, at_half)


def test_threshold_is_a_fitted_attribute_that_clone_drops_and_pickle_keeps():
    X, y, groups = _imbalanced()
    model = PatientThresholdClassifier(LogisticRegression())
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y, groups=groups)
    assert isinstance(model.threshold_, float) and 0 < model.threshold_ < 1
    assert not hasattr(clone(model), "threshold_")
    restored = pickle.loads(pickle.dumps(model))
    assert restored.threshold_ == model.threshold_
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert model.positive_class_ == "malignant" and model.negative_class_ == "benign"


def test_sigmoid_calibration_is_monotone_and_changes_the_balanced_probabilities():
    X, y, groups = _imbalanced()
    raw = PatientThresholdClassifier(LogisticRegression(class_weight="balanced"))
    cal = clone(raw).set_params(calibration="sigmoid")
    raw.fit(X, y, groups=groups)
    cal.fit(X, y, groups=groups)
    p_raw, p_cal = raw.predict_proba(X)[:, 1], cal.predict_proba(X)[:, 1]
    order = np.argsort(p_raw)
    assert np.all(np.diff(p_cal[order]) >= -1e-12)
    # balanced weights pull malignant (75 %) probabilities down; calibration lifts them back
    assert p_cal.mean() > p_raw.mean()
    np.testing.assert_allclose(cal.predict_proba(X).sum(axis=1), 1)
    iso = clone(raw).set_params(calibration="isotonic").fit(X, y, groups=groups)
    assert iso.inner_balanced_accuracy_ >= raw.inner_balanced_accuracy_ - 0.02


def test_parameters_are_validated_in_fit():
    X, y, groups = _imbalanced()
    with pytest.raises(InvalidParameterError):
        PatientThresholdClassifier(LogisticRegression(), n_splits=1).fit(X, y, groups=groups)
    with pytest.raises(InvalidParameterError):
        PatientThresholdClassifier(LogisticRegression(), calibration="platt").fit(X, y)
    with pytest.raises(ValueError, match="binary"):
        PatientThresholdClassifier(LogisticRegression()).fit(X, np.arange(len(y)) % 3)


def test_without_groups_the_inner_folds_are_stratified_samples():
    X, y, _ = _imbalanced()
    model = PatientThresholdClassifier(LogisticRegression()).fit(X, y)
    assert model.inner_proba_.shape == (len(y),)
    assert 0 < model.threshold_ < 1


# --------------------------------------------------------------------------- factories


@pytest.fixture(scope="module")
def tiny_histology():
    from skhybrid import make_histology

    return make_histology(
        32, image_size=(64, 64), grid=(1, 1), n_patients=8, n_jobs=1, random_state=0
    )


def test_recommended_pipeline_has_the_documented_steps():
    model = recommended_pipeline()
    assert tuple(name for name, _ in model.steps) == RECOMMENDED_STEPS
    features, classifier = model.named_steps["features"], model.named_steps["classifier"]
    assert isinstance(features, FeatureUnion)
    assert [name for name, _ in features.transformer_list] == ["texture"]
    assert isinstance(classifier, PatientThresholdClassifier)
    vote = classifier.estimator
    assert isinstance(vote, VotingClassifier) and vote.voting == "soft"
    assert [name for name, _ in vote.estimators] == ["logistic", "svm"]
    logistic, svm = (member for _, member in vote.estimators)
    assert [name for name, _ in logistic.steps] == ["scale", "logistic"]
    assert logistic.named_steps["logistic"].class_weight == "balanced"
    assert [name for name, _ in svm.steps] == ["scale", "svm"]
    assert isinstance(svm.named_steps["svm"], CalibratedClassifierCV)
    assert svm.named_steps["svm"].estimator.kernel == "rbf"
    assert svm.named_steps["svm"].estimator.class_weight == "balanced"
    # one texture model: no vote
    single = recommended_pipeline(texture_model="logistic").named_steps["classifier"].estimator
    assert [name for name, _ in single.steps] == ["scale", "logistic"]
    # the CNN variant: texture and frozen CNN features, a soft vote with a balanced LR on them
    both = recommended_pipeline(cnn=True, texture_grid=(2, 2))
    union, vote = both.named_steps["features"], both.named_steps["classifier"].estimator
    assert [name for name, _ in union.transformer_list] == ["texture", "texture_tiles", "cnn"]
    cnn = dict(union.transformer_list)["cnn"]
    assert [name for name, _ in cnn.steps] == ["tiles", "extract", "pool"]
    assert cnn.named_steps["extract"].backbone == "efficientnet_lite0"
    assert cnn.named_steps["extract"].weights == "imagenet"
    assert [name for name, _ in vote.estimators] == ["logistic", "svm", "cnn"]
    plain = recommended_pipeline(threshold=False)
    assert isinstance(plain.named_steps["classifier"], VotingClassifier)
    with pytest.raises(ValueError, match="texture=True or cnn=True"):
        recommended_pipeline(texture=False)
    with pytest.raises(ValueError, match="texture_model"):
        recommended_pipeline(texture_model="logistic+forest")


@pytest.mark.parametrize(
    "params", [{}, {"texture_model": "logistic+boosting"}, {"texture_grid": (2, 2), "cnn": True}]
)
def test_recommended_pipeline_fits_and_predicts_on_synthetic_tissue(tiny_histology, params):
    data = tiny_histology
    model = recommended_pipeline(batch_size=16, device="cpu", **params)
    model.fit(data.images, data.target, classifier__groups=data.patient)
    pred = model.predict(data.images)
    assert pred.shape == (len(data.target),)
    assert set(pred) <= set(data.target)
    tuned = model.named_steps["classifier"]
    assert 0 < tuned.threshold_ < 1
    proba = model.predict_proba(data.images)[:, list(tuned.classes_).index(tuned.positive_class_)]
    np.testing.assert_array_equal(pred == tuned.positive_class_, proba >= tuned.threshold_)
    # the synthetic classes are easy: the recipe must separate them on its training images
    assert balanced_accuracy_score(data.target, pred) > 0.8
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(data.images), pred)


def test_paper_pipeline_is_the_hybrid_with_self_learning():
    from skhybrid import HybridCNNLSTMClassifier, SelfLearningRelabeler, SubImageTiler

    model = paper_pipeline(max_epochs=3)
    assert [name for name, _ in model.steps] == ["tiles", "clf"]
    tiler, relabeler = model.named_steps["tiles"], model.named_steps["clf"]
    assert isinstance(tiler, SubImageTiler) and tiler.grid == (3, 3)
    assert tiler.tile_size == (224, 224)
    assert isinstance(relabeler, SelfLearningRelabeler) and relabeler.n_rounds == 4
    assert isinstance(relabeler.estimator, HybridCNNLSTMClassifier)
    assert relabeler.estimator.aggregation == "mil"
    assert relabeler.estimator.max_epochs == 3
    plain = paper_pipeline(self_learning_rounds=0).named_steps["clf"]
    assert isinstance(plain, HybridCNNLSTMClassifier) and plain.aggregation == "mean"


def test_make_recipe_dispatches_by_name():
    from skhybrid.exceptions import UserError

    assert RECIPES[0] == "recommended"
    assert isinstance(make_recipe().named_steps["classifier"], PatientThresholdClassifier)
    assert "tiles" in make_recipe("paper").named_steps
    with pytest.raises(UserError, match="recipe must be one of"):
        make_recipe("best")


def test_fit_recipe_routes_the_patients_to_the_final_step(tiny_histology):
    data = tiny_histology
    seen = {}

    class Spy(PatientThresholdClassifier):
        def fit(self, X, y, groups=None):
            seen["groups"] = groups
            return super().fit(X, y, groups=groups)

    model = recommended_pipeline(texture_model="logistic")
    model.steps[-1] = ("classifier", Spy(model.named_steps["classifier"].estimator))
    fit_recipe(model, data.images, data.target, groups=data.patient)
    np.testing.assert_array_equal(seen["groups"], data.patient)
    assert hasattr(model.named_steps["classifier"], "threshold_")


def test_predict_with_decisions_describes_the_images_once(tiny_histology, monkeypatch):
    from skhybrid.features import ColorTextureFeatures
    from skhybrid.recipe_experiment import predict_with_decisions

    data = tiny_histology
    model = fit_recipe(recommended_pipeline(), data.images, data.target, groups=data.patient)
    expected_proba, expected = model.predict_proba(data.images), model.predict(data.images)
    calls = []
    transform = ColorTextureFeatures.transform
    monkeypatch.setattr(
        ColorTextureFeatures,
        "transform",
        lambda self, X: calls.append(len(X)) or transform(self, X),
    )
    proba, decisions = predict_with_decisions(model, data.images)
    assert calls == [len(data.images)]  # the features once, for both answers
    np.testing.assert_allclose(proba, expected_proba)
    np.testing.assert_array_equal(decisions, expected)  # the threshold's, not the argmax


# --------------------------------------------------------------------------- the search


def test_recipe_search_skips_without_the_data(tmp_path, capsys):
    from benchmarks.recipe_search import main

    assert main(["--dev-npz", str(tmp_path / "missing.npz")]) == 0
    assert "recipe_search skipped" in capsys.readouterr().out


def test_recipe_search_writes_a_row_per_candidate_with_the_paired_difference(tmp_path, capsys):
    from benchmarks.recipe_search import main
    from skhybrid import make_histology

    data = make_histology(
        48, image_size=(32, 32), grid=(1, 1), n_patients=12, n_jobs=1, random_state=0
    )
    path = tmp_path / "dev.npz"
    names = np.where(data.target == 1, "malignant", "benign")
    np.savez(path, images=data.images, target=names, patient_number=data.patient.astype(str))
    argv = ["--dev-npz", str(path), "--quick", "--no-cache", "--out", str(tmp_path)]
    assert main([*argv, "--only", "texture LR + threshold"]) == 0
    rows = json.loads((tmp_path / "recipe_search.json").read_text())
    assert [row["name"] for row in rows] == ["baseline: texture LR", "texture LR + threshold"]
    tuned = rows[1]
    assert tuned["n_repeats"] == 1
    low, high = tuned["diff_balanced_accuracy"]["low"], tuned["diff_balanced_accuracy"]["high"]
    assert low <= tuned["diff_balanced_accuracy"]["estimate"] <= high
    assert "| texture LR + threshold |" in capsys.readouterr().out
