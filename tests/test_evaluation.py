"""Patient-bootstrap intervals, repeated patient-wise cross-validation, the paper's convention."""

from __future__ import annotations

import json
import re
from typing import ClassVar

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GroupKFold, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhybrid.evaluation import (
    METRICS,
    Interval,
    cross_validate_patients,
    paper_convention_report,
    patient_bootstrap_interval,
)
from skhybrid.metrics import binary_report, patient_score
from skhybrid.model_selection import RepeatedStratifiedGroupKFold


def width(interval: Interval) -> float:
    return interval.high - interval.low


# --------------------------------------------------------------------------- Interval


def test_interval_prints_estimate_and_bounds() -> None:
    interval = Interval(0.91234, 0.87, 0.95)
    assert str(interval) == "0.912 [0.870, 0.950]"
    assert interval.to_dict() == {"estimate": 0.91234, "low": 0.87, "high": 0.95, "n_skipped": 0}
    with pytest.raises(AttributeError):
        interval.low = 0.0  # frozen


# --------------------------------------------------------------------------- bootstrap


def per_patient_correct(n_patients: int, n_images: int = 10) -> tuple[np.ndarray, ...]:
    """Patients alternating 60 % and 100 % correct images: the same mix at any size."""
    groups = np.repeat(np.arange(n_patients), n_images)
    y = np.ones(len(groups), dtype=int)
    n_right = np.where(np.arange(n_patients) % 2 == 0, 6, 10)
    pred = np.concatenate([[1] * k + [0] * (n_images - k) for k in n_right])
    return y, pred, groups


def test_interval_contains_the_estimate_and_shrinks_as_patients_grow() -> None:
    small = patient_bootstrap_interval(
        accuracy_score, *per_patient_correct(10), n_resamples=500, random_state=0
    )
    large = patient_bootstrap_interval(
        accuracy_score, *per_patient_correct(200), n_resamples=500, random_state=0
    )
    for interval in (small, large):
        assert interval.estimate == pytest.approx(0.8)
        assert interval.low <= interval.estimate <= interval.high
    # The standard error falls as 1/sqrt(n_patients): about 4.5 times narrower.
    assert width(large) < width(small) / 3
    assert width(large) > 0


def test_resamples_patients_not_images() -> None:
    # One patient holds most images, all wrong; 20 small patients are all right.
    groups = np.concatenate([np.zeros(200, dtype=int), np.repeat(np.arange(1, 21), 5)])
    y = np.ones(len(groups), dtype=int)
    pred = np.where(groups == 0, 0, 1)
    by_patient = patient_bootstrap_interval(accuracy_score, y, pred, groups, random_state=0)
    by_image = patient_bootstrap_interval(
        accuracy_score, y, pred, np.arange(len(y)), random_state=0
    )
    assert by_patient.estimate == by_image.estimate == pytest.approx(1 / 3)
    # Whether the big patient is drawn 0, 1 or 2 times swings accuracy widely; the images
    # resampled one by one pretend to be 300 independent cases.
    assert width(by_patient) > 3 * width(by_image)
    assert by_patient.high > 0.6


def test_patient_score_gets_each_draw_as_its_own_patient() -> None:
    y, pred, groups = per_patient_correct(12)
    interval = patient_bootstrap_interval(
        patient_score, y, pred, groups, n_resamples=300, random_state=3
    )
    assert interval.estimate == pytest.approx(patient_score(y, pred, groups))
    # Reference: the mean of the drawn patients' accuracies, with the same draws.
    accuracy_of_patient = np.where(np.arange(12) % 2 == 0, 0.6, 1.0)
    draws = np.random.RandomState(3).randint(12, size=(300, 12))
    expected = np.quantile(accuracy_of_patient[draws].mean(axis=1), [0.025, 0.975])
    assert (interval.low, interval.high) == pytest.approx(tuple(expected))


def test_undefined_resamples_are_skipped_counted_and_warned() -> None:
    # Four single-class patients: a resample of one class only has probability 1/8.
    groups = np.repeat(np.arange(4), 5)
    y = (groups >= 2).astype(int)
    score = np.linspace(0, 1, len(y))
    with pytest.warns(UserWarning, match=r"roc_auc_score was undefined in \d+ of 400"):
        interval = patient_bootstrap_interval(
            roc_auc_score, y, score, groups, n_resamples=400, random_state=0
        )
    assert interval.estimate == 1.0
    assert 20 < interval.n_skipped < 90  # about 400 / 8 = 50
    assert interval.low == interval.high == 1.0  # the defined resamples are all separable


def test_bootstrap_rejects_bad_arguments() -> None:
    y, pred, groups = per_patient_correct(4)
    with pytest.raises(ValueError, match="confidence"):
        patient_bootstrap_interval(accuracy_score, y, pred, groups, confidence=95)
    with pytest.raises(ValueError, match="n_resamples"):
        patient_bootstrap_interval(accuracy_score, y, pred, groups, n_resamples=0)
    with pytest.raises(ValueError, match="inconsistent"):
        patient_bootstrap_interval(accuracy_score, y, pred, groups[:-1])


# --------------------------------------------------------------------------- cross-validation


def grouped_features(n_patients: int = 24, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Single-class patients with a patient offset (like a slide's stain) and a class signal."""
    rng = np.random.RandomState(seed)
    sizes = rng.randint(4, 9, size=n_patients)
    groups = np.repeat(np.arange(n_patients), sizes)
    y = np.where(np.arange(n_patients) % 2 == 0, "benign", "malignant")[groups]
    offset = rng.normal(scale=0.5, size=(n_patients, 4))[groups]
    X = offset + rng.normal(size=(len(groups), 4)) + 1.5 * (y == "malignant")[:, None]
    return X, y, groups


@pytest.fixture(scope="module")
def cv_result():
    X, y, groups = grouped_features()
    cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=2, random_state=0)
    result = cross_validate_patients(
        LogisticRegression(),
        X,
        y,
        groups,
        cv=cv,
        baseline=DummyClassifier(strategy="prior"),
        n_resamples=200,
        random_state=0,
        verbose=0,
    )
    return X, y, groups, cv, result


def test_every_image_gets_one_out_of_fold_prediction_per_repeat(cv_result) -> None:
    X, y, groups, cv, result = cv_result
    assert result.oof_proba.shape == result.oof_pred.shape == (2, len(y))
    assert np.isfinite(result.oof_proba).all() and result.pos_label == "malignant"
    splits = list(cv.split(X, y, groups))
    for fold, (train, test) in zip(result.folds, splits):
        repeat = fold["repeat"]
        assert repeat == fold["fold"] // 4
        # The fold's predictions are those of a model fit on the training patients only.
        model = LogisticRegression().fit(X[train], y[train])
        assert np.array_equal(result.oof_pred[repeat, test], model.predict(X[test]))
        np.testing.assert_allclose(
            result.oof_proba[repeat, test], model.predict_proba(X[test])[:, 1]
        )


def test_per_fold_metrics_equal_binary_report_on_the_fold(cv_result) -> None:
    X, y, groups, cv, result = cv_result
    for fold, (_, test) in zip(result.folds, cv.split(X, y, groups)):
        r = fold["repeat"]
        report = binary_report(y[test], result.oof_pred[r, test], result.oof_proba[r, test])
        for name, value in report.to_dict().items():
            assert fold[name] == pytest.approx(value), name
        assert fold["balanced_accuracy"] == pytest.approx(
            (report.sensitivity + report.specificity) / 2
        )
        assert fold["patient_score"] == pytest.approx(
            patient_score(y[test], result.oof_pred[r, test], groups[test])
        )
        assert fold["n_test"] == len(test) and fold["n_test_patients"] == len(set(groups[test]))


def test_estimates_are_the_repeat_mean_of_the_pooled_metric(cv_result) -> None:
    _, y, groups, _, result = cv_result
    reports = [
        binary_report(y, pred, proba) for pred, proba in zip(result.oof_pred, result.oof_proba)
    ]
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc"):
        expected = np.mean([getattr(report, name) for report in reports])
        assert result.intervals[name].estimate == pytest.approx(expected), name
    expected = np.mean([patient_score(y, pred, groups) for pred in result.oof_pred])
    assert result.intervals["patient_score"].estimate == pytest.approx(expected)
    for interval in result.intervals.values():
        assert interval.low <= interval.estimate <= interval.high


def test_paired_difference_has_the_right_sign(cv_result) -> None:
    *_, result = cv_result
    # The dummy gives every test image of a fold the same probability: AUC 0.5 in each fold.
    # Pooled over folds it is not exactly 0.5: each fold's constant is its training prior,
    # lower where the test fold holds more malignant patients (a known pooling artefact).
    assert all(fold["auc"] == 0.5 for fold in result.baseline_folds)
    assert result.baseline_intervals["auc"].estimate < 0.55
    for name in ("auc", "balanced_accuracy", "accuracy", "patient_score"):
        difference = result.differences[name]
        assert difference.estimate == pytest.approx(
            result.intervals[name].estimate - result.baseline_intervals[name].estimate
        )
        assert difference.low > 0, name  # clearly better, on the same resampled patients


def test_one_repeat_interval_equals_patient_bootstrap_interval() -> None:
    X, y, groups = grouped_features(seed=1)
    result = cross_validate_patients(
        LogisticRegression(),
        X,
        y,
        groups,
        cv=GroupKFold(4),
        n_resamples=150,
        random_state=5,
        verbose=0,
    )
    assert result.n_repeats == 1 and len(result.folds) == 4
    for name, metric, y_other in (
        ("accuracy", accuracy_score, result.oof_pred[0]),
        ("auc", lambda t, s: roc_auc_score(t == "malignant", s), result.oof_proba[0]),
    ):
        expected = patient_bootstrap_interval(
            metric, y, y_other, groups, n_resamples=150, random_state=5
        )
        got = result.intervals[name]
        assert (got.estimate, got.low, got.high) == pytest.approx(
            (expected.estimate, expected.low, expected.high)
        ), name


class GroupsRecorder(ClassifierMixin, BaseEstimator):
    """Logistic regression that records the groups its fit receives."""

    seen: ClassVar[list] = []

    def fit(self, X, y, groups=None):
        GroupsRecorder.seen.append(None if groups is None else np.asarray(groups))
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


@pytest.mark.parametrize("wrap", [False, True], ids=["estimator", "pipeline"])
def test_groups_reach_fit_when_it_takes_them(wrap: bool) -> None:
    X, y, groups = grouped_features()
    estimator = make_pipeline(StandardScaler(), GroupsRecorder()) if wrap else GroupsRecorder()
    GroupsRecorder.seen.clear()
    cv = RepeatedStratifiedGroupKFold(n_splits=3, n_repeats=1, random_state=0)
    cross_validate_patients(estimator, X, y, groups, cv=cv, n_resamples=10, verbose=0)
    assert len(GroupsRecorder.seen) == 3
    for (train, _), seen in zip(cv.split(X, y, groups), GroupsRecorder.seen):
        assert np.array_equal(seen, groups[train])


def test_to_dict_is_json_and_format_shows_intervals(cv_result) -> None:
    *_, result = cv_result
    data = json.loads(json.dumps(result.to_dict()))
    assert data["n_repeats"] == 2 and len(data["folds"]) == 8
    assert len(data["oof_proba"][0]) == result.oof_proba.shape[1]
    assert set(data["intervals"]) == set(data["differences"]) == set(METRICS)
    table = str(result)
    number = r"(?:-?\d\.\d{3}|nan)"
    cell = rf"{number} \[{number}, {number}\]"
    for name in METRICS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert len(re.findall(cell, row)) == 3, row  # model, baseline, difference
    # The dummy never predicts malignant: its precision is undefined, not a number.
    assert re.search(r"\| precision \| \d\.\d{3} \[.*\| nan \[nan, nan\] \|", table)
    assert "Model - baseline (95 % CI)" in table


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored by ShuffleSplit")
def test_cv_must_partition_the_samples() -> None:
    X, y, groups = grouped_features()
    with pytest.raises(ValueError, match="partition|out of every test fold"):
        cross_validate_patients(
            LogisticRegression(), X, y, groups, cv=ShuffleSplit(3, random_state=0), verbose=0
        )
    with pytest.raises(ValueError, match="groups"):
        cross_validate_patients(LogisticRegression(), X, y, None, verbose=0)


def test_default_cv_is_three_repeats_of_four_folds() -> None:
    X, y, groups = grouped_features()
    result = cross_validate_patients(
        clone(LogisticRegression()), X, y, groups, n_resamples=20, verbose=0
    )
    assert result.n_repeats == 3 and len(result.folds) == 12


# --------------------------------------------------------------------------- paper convention


def table8_resnet101_lstm_100x() -> tuple[list[str], list[str]]:
    """TP 1623, FP 4, FN 5, TN 2113 with benign as the paper's positive class."""
    y = ["benign"] * (1623 + 5) + ["malignant"] * (4 + 2113)
    pred = ["benign"] * 1623 + ["malignant"] * 5 + ["benign"] * 4 + ["malignant"] * 2113
    return y, pred


def test_paper_convention_reproduces_table6_row() -> None:
    y, pred = table8_resnet101_lstm_100x()
    report = paper_convention_report(y, pred, positive="benign", digits=2)
    assert (report["sensitivity_positive"], report["specificity_positive"]) == (99.69, 99.81)
    # Table 6 prints 99.76 for accuracy, sensitivity and specificity: the support-weighted
    # average of the recalls (which equals the accuracy); the macro average prints 99.75.
    assert report["accuracy"] == report["sensitivity"] == report["specificity"] == 99.76
    macro = paper_convention_report(y, pred, positive="benign", average="macro")
    assert macro["sensitivity"] == pytest.approx((1623 / 1628 + 2113 / 2117) / 2)
    assert round(100 * macro["sensitivity"], 2) == 99.75
    # Which class is called positive does not change the averaged figures.
    swapped = paper_convention_report(y, pred, positive="malignant", digits=2)
    assert swapped["sensitivity"] == report["sensitivity"]
    assert (swapped["sensitivity_positive"], swapped["specificity_positive"]) == (99.81, 99.69)
    with pytest.raises(ValueError, match="average"):
        paper_convention_report(y, pred, average="micro")


def test_verbose_shows_a_progress_bar_over_the_fits(capsys: pytest.CaptureFixture[str]) -> None:
    X, y, groups = grouped_features()
    cv = RepeatedStratifiedGroupKFold(n_splits=2, n_repeats=1, random_state=0)
    kwargs = {"cv": cv, "baseline": LogisticRegression(C=0.1), "n_resamples": 10}
    cross_validate_patients(LogisticRegression(), X, y, groups, verbose=1, **kwargs)
    assert "4/4" in capsys.readouterr().err  # 2 folds x (model + baseline)
    cross_validate_patients(LogisticRegression(), X, y, groups, verbose=0, **kwargs)
    assert capsys.readouterr().err == ""
