"""scikit-learn contract of the estimators: params, clone, checks, pickling, search, errors.

scikit-learn's estimator checks feed 2-D tabular ``X``; these estimators take uint8 images
``(n, H, W, 3)`` or bags ``(n, T, h, w, 3)`` and say so in their tags
(``input_tags.two_d_array=False``), so ``check_estimator`` skips them. The checks that do not
need data are run explicitly below; the data-driven ones cannot apply:

- check_fit_score_takes_y, check_estimators_overwrite_params, check_dont_overwrite_parameters,
  check_estimators_fit_returns_self, check_readonly_memmap_input, check_estimators_dtypes,
  check_dtype_object, check_f_contiguous_array_estimator, check_classifier_data_not_an_array,
  check_classifiers_classes, check_classifiers_train, check_supervised_y_2d,
  check_dict_unchanged, check_fit_idempotent, check_fit_check_is_fitted, check_n_features_in,
  check_fit2d_predict1d, check_estimators_pickle, check_pipeline_consistency,
  check_estimators_partial_fit_n_features, check_methods_sample_order_invariance,
  check_methods_subset_invariance, check_transformer_general,
  check_transformer_data_not_an_array, check_transformer_preserve_dtypes: they fit on 2-D
  float arrays, which are not images (rejected with a clear message). Their intent is tested
  here with images instead: params unchanged by fit, fit returns self, fitted attributes end
  in ``_``, pickling and pipeline round trips, labels from ``classes_``.
- check_estimators_empty_data_messages, check_fit2d_1sample, check_fit2d_1feature,
  check_complex_data, check_estimators_nan_inf, check_estimator_sparse_*,
  check_positive_only_tag_during_fit, check_classifiers_regression_target,
  check_classifiers_one_label: they expect sklearn's wording for tabular problems; the
  estimators reject such input earlier, saying that images ``(n, H, W, 3)`` uint8 are needed
  (uint8 images cannot hold NaN, inf or complex values).
- check_no_attributes_set_in_init fails for every skorch net: skorch's ``NeuralNet.__init__``
  sets ``history_``, ``initialized_`` and ``virtual_params_``. The test asserts that these
  three are the only extra attributes.
"""

from __future__ import annotations

import inspect
import pickle
import time
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    StratifiedGroupKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils import estimator_checks
from sklearn.utils._param_validation import InvalidParameterError
from skorch.exceptions import DeviceWarning
from torch import nn

from skhybrid.datasets import make_histology
from skhybrid.estimators import (
    CNNClassifier,
    CNNFeatureExtractor,
    HybridCNNLSTMClassifier,
    TileNetClassifier,
)
from skhybrid.nn import CNN, HybridCNNLSTM
from skhybrid.nn.weights import MissingWeightsError
from skhybrid.tiling import SubImageTiler

FAST = {"weights": None, "batch_size": 32, "verbose": 0, "freeze_epochs": 0, "random_state": 0}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return make_histology(
        n_images=18, image_size=(96, 96), n_patients=6, difficulty=0.0, random_state=0
    )


def hybrid(**params):
    defaults = {"backbone": "resnet18", "lstm_hidden_size": 16, "max_epochs": 2}
    return HybridCNNLSTMClassifier(**defaults | FAST | params)


def pipeline(**params):
    return Pipeline([("tiles", SubImageTiler(tile_size=(32, 32))), ("clf", hybrid(**params))])


@pytest.fixture(scope="module")
def fitted(data):
    return pipeline().fit(data.images, data.target)


# -- parameters and scikit-learn's API checks -------------------------------------------------
ESTIMATORS = [
    HybridCNNLSTMClassifier(weights=None),
    CNNClassifier(weights=None),
    CNNFeatureExtractor(weights=None),
]
API_CHECKS = [
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_estimators_unfitted,
    estimator_checks.check_mixin_order,
    estimator_checks.check_valid_tag_types,
    estimator_checks.check_fit1d,
    estimator_checks.check_requires_y_none,
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(estimator, check):
    if check is estimator_checks.check_estimators_unfitted and not hasattr(estimator, "predict"):
        check = estimator_checks.check_transformers_unfitted
    if check is estimator_checks.check_requires_y_none and not hasattr(estimator, "predict"):
        pytest.skip("a transformer ignores y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_init_sets_only_parameters_and_skorchs_bookkeeping(estimator):
    params = set(estimator.get_params(deep=False))
    extra = {k for k in vars(clone(estimator)) if k not in params and not k.startswith("_")}
    assert extra <= {"history_", "initialized_", "virtual_params_"}


def test_params_defaults_follow_the_paper():
    params = HybridCNNLSTMClassifier().get_params()
    expected = {
        "weights": "imagenet", "lstm_hidden_size": 512, "fusion": "attention",
        "max_epochs": 100, "lr": 1e-4, "batch_size": 128, "lr_decay": 0.99,
        "optimizer": torch.optim.Adam, "criterion": torch.nn.CrossEntropyLoss,
        "device": "auto", "rnn_input": "image",
    }  # fmt: skip
    assert {k: params[k] for k in expected} == expected
    assert 0 < params["label_smoothing"] < 1 and 0 < params["dropout"] < 1


def test_the_classifiers_are_siblings_with_the_same_shared_parameters():
    # Neither is the other: code testing for CNNClassifier no longer catches the hybrid.
    assert not isinstance(HybridCNNLSTMClassifier(), CNNClassifier)
    assert not isinstance(CNNClassifier(), HybridCNNLSTMClassifier)
    assert issubclass(CNNClassifier, TileNetClassifier)
    assert issubclass(HybridCNNLSTMClassifier, TileNetClassifier)
    cnn = inspect.signature(CNNClassifier).parameters
    hyb = inspect.signature(HybridCNNLSTMClassifier).parameters
    assert set(hyb) - set(cnn) == {
        "lstm_hidden_size",
        "rnn_input",
        "rnn_map",
        "rnn_map_size",
        "fusion",
    }
    assert set(cnn) <= set(hyb)
    shared = set(cnn) - {"module", "kwargs"}
    assert {k: cnn[k].default for k in shared} == {k: hyb[k].default for k in shared}
    assert cnn["negative_class"].default is None
    assert cnn["module"].default is CNN and hyb["module"].default is HybridCNNLSTM


def test_feature_extractor_params_are_checked_by_sklearn_constraints(data):
    with pytest.raises(
        InvalidParameterError, match="'batch_size' parameter of CNNFeatureExtractor"
    ):
        CNNFeatureExtractor("resnet18", weights=None, batch_size=0).fit(data.images[:2])
    with pytest.raises(InvalidParameterError, match="'precision' parameter"):
        CNNFeatureExtractor("resnet18", weights=None, precision="fp16").fit(data.images[:2])


def test_fit_keeps_params_returns_self_and_adds_only_trailing_underscore_attributes(data):
    clf = hybrid(max_epochs=1)
    before = joblib.hash(clf.get_params(deep=False))
    public_before = {k for k in vars(clf) if not k.startswith("_")}
    bags = SubImageTiler(tile_size=(32, 32)).fit_transform(data.images)
    assert clf.fit(bags, data.target) is clf
    assert joblib.hash(clf.get_params(deep=False)) == before
    added = {k for k in vars(clf) if not k.startswith("_")} - public_before
    assert added and all(k.endswith("_") for k in added)
    assert clf.get_params()["device"] == "auto" and clf.device_ == "cpu"
    with pytest.raises(NotFittedError):
        clone(clf).predict(bags)


def test_set_params_and_clone_rebuild_the_backbone(data):
    bags = SubImageTiler(tile_size=(32, 32)).fit_transform(data.images[:8])
    clf = hybrid(max_epochs=1, valid_size=None)
    clf.fit(bags, data.target[:8])
    assert clf.module_.backbone.name == "resnet18"
    clf.set_params(backbone="mobilenet_v3_small", fusion="concat")
    clf.fit(bags, data.target[:8])
    assert clf.module_.backbone.name == "mobilenet_v3_small"
    assert clf.module_.fusion.out_features == 32
    custom = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
    clf.set_params(backbone=custom)
    assert "backbone" not in clf.prefixes_  # not mistaken for a skorch component
    cloned = clone(clf).fit(bags, data.target[:8])
    assert cloned.module_.backbone.out_channels == 8
    assert cloned.module_.backbone.features is not custom  # the parameter is never trained
    assert torch.equal(custom[0].weight, clf.backbone[0].weight)


# -- pickling and devices -----------------------------------------------------------------------
def test_joblib_round_trip_of_a_fitted_pipeline_gives_identical_probabilities(
    fitted, data, tmp_path
):
    path = tmp_path / "pipe.joblib"
    joblib.dump(fitted, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(
        loaded.predict_proba(data.images), fitted.predict_proba(data.images)
    )
    np.testing.assert_array_equal(loaded.predict(data.images), fitted.predict(data.images))
    assert loaded.named_steps["clf"].get_params()["device"] == "auto"


def _unpickle_as_if_saved_on(clf, device, monkeypatch):
    """Reload ``clf`` with its pickled state claiming it was trained on ``device``."""
    state = clf.__getstate__()
    state["device_"] = "cuda"
    if device != "auto":
        state["device"] = device
    map_locations = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        map_locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "load", recording_load)
    restored = type(clf).__new__(type(clf))
    restored.__setstate__(state)
    return restored, map_locations


def test_cuda_trained_model_loads_on_a_cpu_only_machine(fitted, data, monkeypatch):
    clf = fitted.named_steps["clf"]
    bags = fitted.named_steps["tiles"].transform(data.images[:4])
    expected = clf.predict_proba(bags)

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceWarning)  # "auto" falls back quietly
        restored, locations = _unpickle_as_if_saved_on(clf, "auto", monkeypatch)
    assert locations and all(torch.device(loc) == torch.device("cpu") for loc in locations)
    assert restored.device == "auto" and restored.device_ == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(bags), expected)

    with pytest.warns(DeviceWarning, match="not available"):
        restored, locations = _unpickle_as_if_saved_on(clf, "cuda", monkeypatch)
    assert restored.device_ == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(bags), expected)


# -- model selection ------------------------------------------------------------------------------
def test_cross_val_score_with_patient_groups(data):
    # Every synthetic patient has one class: plain GroupKFold(3) gives one-class test folds and
    # 3:1 training folds (scores 0, 0, 1), so the folds are stratified by patient, and the
    # loss balanced, as on real tissue.
    scores = cross_val_score(
        pipeline(max_epochs=3, lr=1e-3, class_weight="balanced"), data.images, data.target,
        groups=data.patient, cv=StratifiedGroupKFold(3), error_score="raise",
    )  # fmt: skip
    assert scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.mean() > 0.6


def test_grid_search_over_backbones_and_fusions(data):
    grid = {
        "clf__backbone": ["resnet18", "mobilenet_v3_small"],
        "clf__fusion": ["attention", "sum"],
    }
    search = GridSearchCV(
        pipeline(max_epochs=2, lr=1e-3), grid, cv=GroupKFold(2), error_score="raise"
    )
    search.fit(data.images, data.target, groups=data.patient)
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_params_["clf__backbone"] in grid["clf__backbone"]
    best = search.best_estimator_.named_steps["clf"]
    assert best.module_.backbone.name == search.best_params_["clf__backbone"]
    assert set(search.predict(data.images)) <= set(data.target)


# -- errors ---------------------------------------------------------------------------------------
def test_unknown_names_are_rejected_in_fit_with_the_valid_ones(data):
    X, y = data.images[:4], data.target[:4]
    # scikit-learn's InvalidParameterError (a ValueError) from _parameter_constraints
    with pytest.raises(InvalidParameterError, match="'backbone' parameter.*resnet101.*'resnet7'"):
        hybrid(backbone="resnet7").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'fusion' parameter.*attention.*'gated'"):
        hybrid(fusion="gated").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'aggregation' parameter.*vote.*'median'"):
        hybrid(aggregation="median").fit(X, y)
    with pytest.raises(InvalidParameterError, match=r"'lr_decay' parameter.*\[0.0, 1.0\]"):
        hybrid(lr_decay=2.0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="'cache_features' parameter"):
        hybrid(cache_features="yes").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'valid_size' parameter"):
        hybrid(valid_size=0.95).fit(X, y)


def test_wrong_input_shape_or_dtype_gives_a_clear_error(data):
    clf = hybrid()
    with pytest.raises(TypeError, match="uint8"):
        clf.fit(data.images.astype(np.float32) / 255, data.target)
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\)"):
        clf.fit(np.zeros((10, 5)), np.arange(10) % 2)
    with pytest.raises(ValueError, match="1 channel"):
        clf.fit(data.images[..., :1], data.target)
    with pytest.raises(ValueError, match="one label per image"):
        clf.fit(data.images, data.target[:-1])


def test_missing_imagenet_weights_fail_fast_naming_the_file(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    clf = hybrid(weights="imagenet")
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        clf.fit(data.images[:4], data.target[:4])
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "weights=None" in message


# -- feature extractor ----------------------------------------------------------------------------
def test_feature_extractor_shapes_and_a_logistic_baseline(data):
    bags = SubImageTiler(tile_size=(32, 32)).fit_transform(data.images)
    extractor = CNNFeatureExtractor("resnet18", weights=None).fit(bags)
    features = extractor.transform(bags)
    assert features.shape == (len(bags), 9, 512) and features.dtype == np.float32
    images = extractor.transform(data.images)
    assert images.shape == (len(bags), 512)
    np.testing.assert_array_equal(extractor.transform(bags[:, 0]), features[:, 0])
    assert len(extractor.get_feature_names_out()) == 512

    baseline = make_pipeline(CNNFeatureExtractor("resnet18", weights=None), LogisticRegression())
    baseline.fit(data.images, data.target)
    assert baseline.score(data.images, data.target) > 0.8  # colours are linearly separable
    restored = pickle.loads(pickle.dumps(baseline))
    np.testing.assert_allclose(
        restored.predict_proba(data.images), baseline.predict_proba(data.images), rtol=1e-6
    )


def test_set_params_device_is_kept_even_when_auto_resolves_to_it():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    clf = CNNClassifier("resnet18", weights=None, max_epochs=1, valid_size=None, verbose=0)
    clf.fit(X, [0, 1] * 4)
    assert clf.get_params()["device"] == "auto"
    clf.set_params(device=clf.device_)  # what "auto" resolved to, asked for explicitly
    assert clf.get_params()["device"] == clf.device_
    clf.set_params(device="auto", lr=0.01)
    assert clf.get_params()["device"] == "auto"
    clf.set_params(lr=0.02)
    assert clf.get_params()["device"] == "auto"
