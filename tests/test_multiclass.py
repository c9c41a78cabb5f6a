"""k classes (the eight BreakHis subtypes): the k-class report, scorers, confusion-matrix plot,
image aggregation, and self-learning with a negative set, against ground truth."""

from __future__ import annotations

import functools
import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    get_scorer,
    roc_auc_score,
)
from sklearn.model_selection import GroupKFold, cross_validate
from threadpoolctl import threadpool_limits

from skhybrid.class_roles import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES
from skhybrid.estimators import aggregate_proba
from skhybrid.metrics import (
    MulticlassReport,
    binary_report,
    get_multiclass_scorers,
    multiclass_report,
    patient_score,
    plot_confusion_matrix,
)
from skhybrid.self_learning import SelfLearningRelabeler, relabel_positive_tiles


def _logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=1000)


SUBTYPES = BENIGN_SUBTYPES + MALIGNANT_SUBTYPES  # the order of load_breakhis(target="subtype")
BENIGN = [0, 1, 2, 3]


@pytest.fixture(scope="module", autouse=True)
def _single_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def predictions():
    """Noisy 8-class predictions with probabilities (rows sum to 1) and 20 patients."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 8, 300)
    y_pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 8, 300))
    score = rng.random((300, 8))
    score[np.arange(300), y] += 0.7
    score /= score.sum(axis=1, keepdims=True)
    return y, y_pred, score, rng.integers(0, 20, 300)


# -- the k-class report ---------------------------------------------------------------------------
def test_report_equals_scikit_learn(predictions):
    y, y_pred, score, patients = predictions
    report = multiclass_report(y, y_pred, score, target_names=SUBTYPES, patients=patients)
    expected = classification_report(y, y_pred, target_names=SUBTYPES, output_dict=True)
    for i, name in enumerate(SUBTYPES):
        assert report.precision[i] == pytest.approx(expected[name]["precision"])
        assert report.recall[i] == pytest.approx(expected[name]["recall"])
        assert report.f1[i] == pytest.approx(expected[name]["f1-score"])
        assert report.support[i] == expected[name]["support"]
        assert report.per_class[name]["f1"] == report.f1[i]
    for average in ("macro", "weighted"):
        assert report.macro["f1"] == pytest.approx(expected["macro avg"]["f1-score"])
        got = getattr(report, average)
        assert got["recall"] == pytest.approx(expected[f"{average} avg"]["recall"])
    assert report.accuracy == pytest.approx(expected["accuracy"])
    assert report.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, y_pred))
    # Every class present: the AUCs are scikit-learn's one-vs-rest ones.
    assert report.macro_auc == pytest.approx(roc_auc_score(y, score, multi_class="ovr"))
    np.testing.assert_allclose(report.auc, roc_auc_score(y, score, multi_class="ovr", average=None))
    assert report.patient_score == pytest.approx(patient_score(y, y_pred, patients))
    np.testing.assert_array_equal(report.confusion_matrix, confusion_matrix(y, y_pred))
    assert report.labels == tuple(range(8)) and report.n == 300


def test_a_fold_without_some_classes_is_reported_without_errors(predictions):
    y, y_pred, score, _ = predictions
    keep = (y != 7) & (y_pred != 7) & (y != 5)  # class 7 absent, class 5 only predicted
    with warnings.catch_warnings():
        # No zero-division or AUC warnings; only scikit-learn's note that balanced accuracy
        # ignores a class that is predicted but absent.
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        report = multiclass_report(y[keep], y_pred[keep], score[keep], labels=range(8))
    assert len(report.labels) == 8  # the same rows as every other fold
    assert report.support[7] == report.support[5] == 0
    assert report.recall[7] == report.precision[7] == 0.0  # zero_division=0
    assert np.isnan(report.auc[7]) and np.isnan(report.auc[5])  # no positives: skipped
    defined = [report.auc[i] for i in range(7) if i != 5]
    assert report.macro_auc == pytest.approx(np.mean(defined))
    for i in (0, 3, 6):
        assert report.auc[i] == pytest.approx(roc_auc_score(y[keep] == i, score[keep][:, i]))
    # balanced accuracy is scikit-learn's: the classes present in y_true only.
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):
        expected = balanced_accuracy_score(y[keep], y_pred[keep])
    assert report.balanced_accuracy == pytest.approx(expected)
    np.testing.assert_array_equal(
        report.confusion_matrix, confusion_matrix(y[keep], y_pred[keep], labels=range(8))
    )


def test_report_serialises_and_prints(predictions):
    y, y_pred, _, _ = predictions
    report = multiclass_report(y[:40], y_pred[:40], None, labels=range(8), target_names=SUBTYPES)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON
    assert data["target_names"] == list(SUBTYPES)
    assert data["per_class"]["adenosis"]["auc"] is None  # no y_score: no AUC
    assert data["macro_auc"] is None and data["patient_score"] is None
    assert data["confusion_matrix"] == [list(r) for r in report.confusion_matrix]
    assert data["per_class"]["ductal_carcinoma"]["support"] == int(np.sum(y[:40] == 4))
    text = str(report)
    for name in (*SUBTYPES, "macro avg", "weighted avg", "Balanced accuracy", "Confusion"):
        assert name in text
    assert f"{100 * report.accuracy:.2f}" in text
    restored = pickle.loads(pickle.dumps(report))
    assert isinstance(restored, MulticlassReport)
    assert restored.to_dict() == report.to_dict()  # nan != nan: compare the JSON form
    hash(restored)  # frozen and hashable, like BinaryReport


def test_string_labels_two_classes_and_the_binary_report():
    y = ["benign", "malignant", "malignant", "benign"]
    y_pred = ["benign", "malignant", "benign", "benign"]
    report = multiclass_report(y, y_pred)
    binary = binary_report(y, y_pred)
    # Per-class recall of two classes is specificity and sensitivity; the binary report is
    # unchanged by the k-class one.
    assert report.recall == (binary.specificity, binary.sensitivity)
    assert report.target_names == ("benign", "malignant")
    assert report.accuracy == binary.accuracy


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_score": np.ones((4, 2))}, r"shape \(n_samples, 3\)"),
        ({"labels": [0, 1]}, "not in labels"),
        ({"labels": [0, 1, 1, 2]}, "repeated"),
        ({"target_names": ["a", "b"]}, "2 names for 3 labels"),
        ({"patients": [1, 2]}, "different lengths"),
        ({"y_score": np.full((4, 3), np.nan)}, "NaN"),
    ],
)
def test_report_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        multiclass_report([0, 1, 2, 2], [0, 1, 2, 1], **kwargs)


# -- scorers --------------------------------------------------------------------------------------
def _blobs(n: int = 240, k: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = 3 * np.c_[np.cos(np.arange(k) * 2 * np.pi / k), np.sin(np.arange(k) * 2 * np.pi / k)]
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(scale=1.0, size=(n, 2)), y


def test_multiclass_scorers_in_cross_validate():
    X, y = _blobs()
    groups = np.arange(len(y)) % 6
    scorers = get_multiclass_scorers()
    assert set(scorers) == {
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "f1_weighted",
        "roc_auc_ovr",
    }
    result = cross_validate(
        _logreg(), X, y, groups=groups, cv=GroupKFold(3), scoring=scorers,
        return_estimator=True, return_indices=True,
    )  # fmt: skip
    for fold, (model, test) in enumerate(zip(result["estimator"], result["indices"]["test"])):
        y_pred = model.predict(X[test])
        assert result["test_balanced_accuracy"][fold] == pytest.approx(
            balanced_accuracy_score(y[test], y_pred)
        )
        assert result["test_f1_macro"][fold] == pytest.approx(
            f1_score(y[test], y_pred, average="macro")
        )
        # The same number as scikit-learn's own "roc_auc_ovr" scorer when every class is there.
        assert result["test_roc_auc_ovr"][fold] == pytest.approx(
            get_scorer("roc_auc_ovr")(model, X[test], y[test])
        )
    assert result["test_roc_auc_ovr"].mean() > 0.8  # the blobs are separable: not a constant
    # They pickle (n_jobs, dask): module-level functions and make_scorer objects.
    restored = pickle.loads(pickle.dumps(scorers))
    model = result["estimator"][0]
    assert restored["roc_auc_ovr"](model, X, y) == scorers["roc_auc_ovr"](model, X, y)


def test_roc_auc_ovr_scorer_survives_a_fold_without_a_class():
    X, y = _blobs()
    model = _logreg().fit(X, y)
    test = y != 7
    # scikit-learn's scorer cannot score this fold; ours averages the seven classes present.
    with pytest.raises(ValueError):
        get_scorer("roc_auc_ovr")(model, X[test], y[test])
    proba = model.predict_proba(X[test])
    expected = np.mean([roc_auc_score(y[test] == c, proba[:, c]) for c in range(7)])
    assert get_multiclass_scorers()["roc_auc_ovr"](model, X[test], y[test]) == pytest.approx(
        expected
    )


# -- the confusion-matrix plot --------------------------------------------------------------------
def test_plot_confusion_matrix_with_subtype_names(predictions, tmp_path):
    y, y_pred, _, _ = predictions
    path = tmp_path / "confusion.png"
    display = plot_confusion_matrix(
        y, y_pred, path, labels=range(8), display_labels=SUBTYPES, normalize="true"
    )
    np.testing.assert_allclose(
        display.confusion_matrix, confusion_matrix(y, y_pred, labels=range(8), normalize="true")
    )
    ax = display.ax_
    assert [t.get_text() for t in ax.get_xticklabels()] == list(SUBTYPES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(SUBTYPES)
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert display.figure_.get_size_inches()[0] > 5  # room for eight names
    assert path.stat().st_size > 0
    # Without labels: the sorted labels of y_true and y_pred, shown as themselves.
    names = ["ductal", "adenosis", "lobular", "ductal"]
    display = plot_confusion_matrix(names, ["ductal", "lobular", "lobular", "adenosis"])
    assert [t.get_text() for t in display.ax_.get_xticklabels()] == [
        "adenosis",
        "ductal",
        "lobular",
    ]
    np.testing.assert_array_equal(display.confusion_matrix, [[0, 0, 1], [1, 1, 0], [0, 0, 1]])


def test_plot_confusion_matrix_k_class_validation_and_binary_path():
    with pytest.raises(ValueError, match="pos_label applies to the binary matrix"):
        plot_confusion_matrix([0, 1, 2], [0, 1, 2], pos_label=2)
    with pytest.raises(ValueError, match="display_labels has 2 names"):
        plot_confusion_matrix([0, 1, 2], [0, 1, 2], display_labels=["a", "b"])
    with pytest.raises(ValueError, match="not in labels"):
        plot_confusion_matrix([0, 1, 2], [0, 1, 2], labels=[0, 1])
    # Two labels and no labels=: the binary matrix, negative first, renamed on request.
    display = plot_confusion_matrix([1, 0, 1], [1, 1, 1], display_labels=["benign", "malignant"])
    np.testing.assert_array_equal(display.confusion_matrix, [[0, 1], [0, 2]])
    assert [t.get_text() for t in display.ax_.get_yticklabels()] == ["benign", "malignant"]


# -- image aggregation of k classes (skhybrid/estimators/_aggregate.py) ---------------------------
def _tiles(peaks: list[int], k: int = 8, p: float = 0.86) -> np.ndarray:
    """One image whose tile t is confident (p) about class peaks[t]."""
    tiles = np.full((1, len(peaks), k), (1 - p) / (k - 1))
    tiles[0, np.arange(len(peaks)), peaks] = p
    return tiles


@pytest.mark.parametrize("aggregation", ["mean", "max", "vote", "mil"])
def test_aggregation_of_eight_classes_gives_distributions(aggregation):
    rng = np.random.default_rng(0)
    tile_proba = rng.dirichlet(np.ones(8), size=(5, 9))
    image = aggregate_proba(tile_proba, aggregation, negative_index=0)
    assert image.shape == (5, 8)
    np.testing.assert_allclose(image.sum(axis=1), 1.0)
    assert (image >= 0).all()


def test_aggregation_of_eight_classes_values():
    # A ductal (4) image: two tiles of fibroadenoma-like (1) benign tissue, one tumour tile.
    tiles = _tiles([1, 1, 4])
    np.testing.assert_allclose(aggregate_proba(tiles, "mean"), tiles.mean(axis=1))
    np.testing.assert_allclose(aggregate_proba(tiles, "vote")[0, [1, 4]], [2 / 3, 1 / 3])
    assert aggregate_proba(tiles, "max")[0, 1] == pytest.approx(aggregate_proba(tiles, "max")[0, 4])
    # "mil" with one negative class (0): P(0) is its smallest tile probability and the rest is
    # shared by each class's largest tile probability.
    mil = aggregate_proba(tiles, "mil", negative_index=0)
    assert mil[0, 0] == pytest.approx(tiles[0, :, 0].min())
    assert mil[0, 4] == pytest.approx(mil[0, 1])


def test_mil_aggregation_with_benign_subtypes_calls_the_tumour_tile():
    # Under the hierarchy "an image is malignant as soon as one tile is", the ductal tile wins
    # once the four benign subtypes are the negative set.
    tiles = _tiles([1, 1, 4])
    mil = aggregate_proba(tiles, "mil", negative_index=[0, 1, 2, 3])
    assert mil[0].argmax() == 4
    np.testing.assert_allclose(mil.sum(axis=1), 1.0)
    # P(benign set) is the least benign tile's benign mass.
    assert mil[0, :4].sum() == pytest.approx(tiles[0, 2, :4].sum())
    # With one negative column (the binary rule) the other benign subtypes count as positive.
    assert aggregate_proba(tiles, "mil", negative_index=0)[0].argmax() == 1
    # A benign image (every tile benign) stays benign.
    assert aggregate_proba(_tiles([1, 2, 3]), "mil", negative_index=[0, 1, 2, 3])[0, :4].sum() > 0.5


def test_estimators_mil_uses_the_negative_set_of_subtype_names():
    from skhybrid import CNNClassifier
    from skhybrid.class_roles import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES

    names = np.array(sorted(BENIGN_SUBTYPES + MALIGNANT_SUBTYPES))
    rng = np.random.default_rng(0)
    bags = rng.integers(0, 256, (8, 2, 16, 16, 3), dtype=np.uint8)
    clf = CNNClassifier("resnet18", weights=None, max_epochs=1, valid_size=None, verbose=0,
                        aggregation="mil", random_state=0).fit(bags, names)  # fmt: skip
    tile = clf.predict_proba_tiles(bags)
    negative = np.isin(clf.classes_, BENIGN_SUBTYPES)
    expected = tile[:, :, negative].sum(axis=2).min(axis=1)
    np.testing.assert_allclose(clf.predict_proba(bags)[:, negative].sum(axis=1), expected)


# -- self-learning with subtypes: the rule on hand-made probabilities -----------------------------
def test_k_class_rule_exact_labels():
    classes = np.arange(4)  # 0, 1 benign subtypes; 2, 3 malignant subtypes
    image_labels = np.array([1, 2, 3])
    labels = np.repeat(image_labels[:, None], 4, axis=1)
    proba = np.array(
        [
            [[0.9, 0.05, 0.03, 0.02]] * 4,  # benign subtype 1 image: never changes
            [[0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.4, 0.0], [0.05, 0.05, 0.1, 0.8],
             [0.5, 0.0, 0.5, 0.0]],
            [[0.7, 0.1, 0.1, 0.1]] * 4,  # every tile benign-looking: the first is kept
        ]
    )  # fmt: skip
    new = relabel_positive_tiles(labels, image_labels, proba, classes, negative_classes=[0, 1])
    np.testing.assert_array_equal(
        new,
        [
            [1, 1, 1, 1],
            # 0.7 benign -> most probable benign subtype 1; 0.6 total benign beats the 0.4 of
            # the subtype although no single benign subtype does -> 0 (tie: first); the least
            # benign tile (0.1) is kept; 0.5 is not above the threshold.
            [1, 0, 2, 2],
            [3, 0, 0, 0],
        ],
    )


def test_k_class_rule_with_one_negative_class_is_the_binary_rule():
    rng = np.random.default_rng(0)
    image_labels = rng.integers(0, 2, 30)
    labels = np.repeat(image_labels[:, None], 6, axis=1)
    p = rng.random((30, 6))
    proba = np.stack([p, 1 - p], axis=-1)
    for flip in (True, False):
        old = relabel_positive_tiles(
            labels, image_labels, proba, [0, 1], negative_class=0, allow_flip_back=flip
        )
        new = relabel_positive_tiles(
            labels, image_labels, proba, [0, 1], negative_classes=[0], allow_flip_back=flip
        )
        np.testing.assert_array_equal(old, new)
        assert (old != labels).any()  # the comparison is not vacuous


def test_k_class_rule_monotone_keeps_fallen_tiles_benign():
    current = np.array([[0, 2, 2]])  # tile 0 fell back to benign subtype 0 earlier
    proba = np.array([[[0.05, 0.05, 0.9], [0.1, 0.7, 0.2], [0.0, 0.1, 0.9]]])
    args = (current, [2], proba, [0, 1, 2])
    # Flip back: tile 0 looks malignant again. Monotone: it stays benign (its most probable
    # benign subtype now, 0 vs 1 tie -> 0).
    np.testing.assert_array_equal(
        relabel_positive_tiles(*args, negative_classes=[0, 1]), [[2, 1, 2]]
    )
    np.testing.assert_array_equal(
        relabel_positive_tiles(*args, negative_classes=[0, 1], allow_flip_back=False), [[0, 1, 2]]
    )


def test_benign_subtype_names_longer_than_the_tile_labels_are_not_truncated():
    labels = np.array([["ductal_carcinoma"] * 2])
    proba = np.array([[[0.9, 0.1], [0.1, 0.9]]])
    new = relabel_positive_tiles(
        labels.astype("<U16"), ["ductal_carcinoma"], proba, ["phyllodes_tumor_x", "ductal_carcinoma"],
        negative_classes=["phyllodes_tumor_x"],
    )  # fmt: skip
    assert new.tolist() == [["phyllodes_tumor_x", "ductal_carcinoma"]]


# -- self-learning with subtypes against tile ground truth ----------------------------------------
def _subtype_bags(n_images: int = 160, n_tiles: int = 6, seed: int = 0):
    """Eight subtypes on a circle in 2-D; malignant images hold benign-subtype tissue.

    Benign-subtype images: every tile is of their subtype. Malignant-subtype images: each tile
    is of their subtype with probability 0.5, else of a random benign subtype; at least one is
    tumour. A logistic regression separates the eight blobs.
    """
    rng = np.random.default_rng(seed)
    angle = np.arange(8) * 2 * np.pi / 8
    centres = 4 * np.c_[np.cos(angle), np.sin(angle)]
    y = np.tile(np.arange(8), n_images // 8)
    truth = np.repeat(y[:, None], n_tiles, axis=1)
    malignant = y >= 4
    benign_tissue = malignant[:, None] & (rng.random((n_images, n_tiles)) < 0.5)
    benign_tissue[:, 0] = False  # the tumour tile of every malignant image
    truth = np.where(benign_tissue, rng.integers(0, 4, (n_images, n_tiles)), truth)
    bags = centres[truth] + rng.normal(scale=0.6, size=(n_images, n_tiles, 2))
    return bags, y, truth


@pytest.fixture(scope="module")
def subtype_fit():
    bags, y, truth = _subtype_bags()
    relabeler = SelfLearningRelabeler(
        _logreg(), n_rounds=3, negative_classes=BENIGN, cv=4, random_state=0
    ).fit(bags, y)
    return relabeler, bags, y, truth


def test_subtype_invariants_hold_after_every_round(subtype_fit):
    relabeler, _, y, _ = subtype_fit
    assert relabeler.n_rounds_ >= 1
    benign_image = np.isin(y, BENIGN)
    for labels in relabeler.tile_label_history_:
        # Benign-subtype images keep their label.
        np.testing.assert_array_equal(labels[benign_image], np.repeat(y[benign_image, None], 6, 1))
        own = labels == y[:, None]
        # A malignant image's tile is its own subtype or a benign subtype ...
        assert (own | np.isin(labels, BENIGN))[~benign_image].all()
        # ... and every malignant image keeps min_positive_tiles tiles of its subtype.
        assert (own[~benign_image].sum(axis=1) >= relabeler.min_positive_tiles).all()
    np.testing.assert_array_equal(relabeler.negative_classes_, BENIGN)
    assert relabeler.negative_class_ is None


def test_subtype_relabeling_agrees_with_the_ground_truth(subtype_fit):
    relabeler, _, _, truth = subtype_fit
    inherited = relabeler.tile_label_history_[0]
    before = np.mean(inherited == truth)
    after = np.mean(relabeler.tile_labels_ == truth)
    assert before < 0.85 and after > 0.95  # 0.80 -> 0.99 (exact benign subtype included)
    # The fall-back subtype is the true one, not only "some benign subtype".
    fell_back = relabeler.tile_labels_ != inherited
    assert fell_back.sum() > 100
    assert np.mean(relabeler.tile_labels_[fell_back] == truth[fell_back]) > 0.95
    # The history counts tiles that moved to and from the negative set.
    first = relabeler.history_[1]
    assert first["n_to_negative"] == int(np.sum(relabeler.tile_label_history_[1] != inherited))
    assert sum(first["class_counts"].values()) == truth.size


def test_subtype_predictions_follow_the_negative_set(subtype_fit):
    relabeler, bags, y, _ = subtype_fit
    proba = relabeler.predict_proba(bags)
    assert proba.shape == (len(y), 8)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # With min_positive_tiles=1 an image is judged by its least benign tile (summed over the
    # benign subtypes), so malignant images are found by their tumour tile.
    report = multiclass_report(y, relabeler.predict(bags), proba, target_names=SUBTYPES)
    assert report.accuracy > 0.9
    assert report.macro_auc > 0.95


def test_subtype_names_need_no_parameter_and_match_the_integer_fit(subtype_fit):
    relabeler, bags, y, _ = subtype_fit
    names = np.array(SUBTYPES)[y]
    named = SelfLearningRelabeler(_logreg(), n_rounds=3, cv=4, random_state=0)
    named.fit(bags, names)
    assert tuple(named.negative_classes_) == BENIGN_SUBTYPES
    # classes_ sorts the names differently from the codes (other folds, other column order),
    # so the relabeling agrees up to a tile or two.
    assert np.mean(named.tile_labels_ == np.array(SUBTYPES)[relabeler.tile_labels_]) > 0.99


def test_numeric_subtypes_without_a_negative_set_are_refused(subtype_fit):
    _, bags, y, _ = subtype_fit
    with pytest.raises(ValueError, match="negative_classes="):
        SelfLearningRelabeler(_logreg(), n_rounds=1).fit(bags, y)
    with pytest.raises(ValueError, match="not one of the classes"):
        SelfLearningRelabeler(_logreg(), negative_classes=[0, 9]).fit(bags, y)
    with pytest.raises(ValueError, match="not one of negative_classes"):
        SelfLearningRelabeler(_logreg(), negative_class=5, negative_classes=BENIGN).fit(bags, y)


def test_a_custom_rule_is_checked_against_the_negative_set(subtype_fit):
    relabeler, bags, y, _ = subtype_fit
    rule = functools.partial(relabel_positive_tiles, negative_classes=BENIGN)
    params = {"n_rounds": 3, "rule": rule, "cv": 4, "random_state": 0}
    custom = SelfLearningRelabeler(_logreg(), negative_classes=BENIGN, **params)
    np.testing.assert_array_equal(custom.fit(bags, y).tile_labels_, relabeler.tile_labels_)
    # Without negative_classes the relabeler's set is {0} (the smallest number, as before), so
    # tiles falling back to benign subtypes 1-3 break its invariants.
    with pytest.raises(ValueError, match="other than its image's label"):
        SelfLearningRelabeler(_logreg(), **params).fit(bags, y)


def test_negative_classes_is_a_plain_parameter():
    from sklearn.base import clone

    relabeler = SelfLearningRelabeler(_logreg(), negative_classes=BENIGN)
    assert relabeler.get_params()["negative_classes"] == BENIGN
    assert clone(relabeler).negative_classes == BENIGN
    assert relabeler.__sklearn_tags__().classifier_tags.multi_class
