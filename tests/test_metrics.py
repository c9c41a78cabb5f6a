"""Tests for skhybrid.metrics."""

from __future__ import annotations

import builtins
import csv
import doctest
import importlib
import io
import math
import pickle
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_classification
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.neighbors import KNeighborsClassifier

from skhybrid import metrics
from skhybrid.metrics import (
    SCORERS,
    BinaryReport,
    binary_report,
    confusion_counts,
    format_reports,
    get_scorers,
    patient_score,
    plot_confusion_matrix,
    plot_precision_recall_curve,
    plot_roc_curve,
    sensitivity_score,
    specificity_score,
)

B, M = "benign", "malignant"

# Hand-counted: positions 0-3 are malignant, 4-8 benign.
#   malignant -> M, M, M, B   : TP=3, FN=1
#   benign    -> B, B, B, M, M: TN=3, FP=2
Y_TRUE = [M, M, M, M, B, B, B, B, B]
Y_PRED = [M, M, M, B, B, B, B, M, M]


# --------------------------------------------------------------------------- counts/scores


def test_confusion_counts_hand_computed():
    assert confusion_counts(Y_TRUE, Y_PRED) == (3, 2, 1, 3)
    # Same data with ints: 1 is positive by default.
    to_int = {B: 0, M: 1}
    assert confusion_counts([to_int[v] for v in Y_TRUE], [to_int[v] for v in Y_PRED]) == (
        3,
        2,
        1,
        3,
    )
    # Swapping the positive class swaps TP<->TN and FP<->FN.
    assert confusion_counts(Y_TRUE, Y_PRED, pos_label=B) == (3, 1, 2, 3)
    counts = confusion_counts(Y_TRUE, Y_PRED)
    assert all(type(c) is int for c in counts)


def test_sensitivity_specificity_hand_computed():
    assert sensitivity_score(Y_TRUE, Y_PRED) == pytest.approx(3 / 4)
    assert specificity_score(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)
    # The negative class's sensitivity is the positive class's specificity.
    assert sensitivity_score(Y_TRUE, Y_PRED, pos_label=B) == pytest.approx(3 / 5)
    assert specificity_score(Y_TRUE, Y_PRED, pos_label=B) == pytest.approx(3 / 4)


def test_all_wrong():
    y_true = [0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0]
    assert confusion_counts(y_true, y_pred) == (0, 2, 3, 0)
    assert sensitivity_score(y_true, y_pred) == 0.0
    assert specificity_score(y_true, y_pred) == 0.0
    # Precision and F1 are defined (0) since some samples are predicted positive.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = binary_report(y_true, y_pred, [0.9, 0.8, 0.1, 0.2, 0.3])
    assert report.accuracy == 0.0
    assert report.precision == 0.0
    assert report.f1 == 0.0
    assert report.auc == 0.0


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=30),
    st.sampled_from(["warn", 0.0, 1.0, np.nan]),
    st.sampled_from([0, 1]),
)
@settings(max_examples=60, deadline=None)
def test_matches_sklearn(pairs, zero_division, pos_label):
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    neg_label = 1 - pos_label
    kw = {"zero_division": zero_division}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        pairs_to_check = [
            (
                sensitivity_score(y_true, y_pred, pos_label=pos_label, **kw),
                recall_score(y_true, y_pred, pos_label=pos_label, labels=[0, 1], **kw),
            ),
            (
                specificity_score(y_true, y_pred, pos_label=pos_label, **kw),
                recall_score(y_true, y_pred, pos_label=neg_label, labels=[0, 1], **kw),
            ),
        ]
        report = binary_report(y_true, y_pred, pos_label=pos_label, **kw)
        pairs_to_check += [
            (report.sensitivity, pairs_to_check[0][1]),
            (report.specificity, pairs_to_check[1][1]),
            (
                report.precision,
                precision_score(y_true, y_pred, pos_label=pos_label, labels=[0, 1], **kw),
            ),
            (report.f1, f1_score(y_true, y_pred, pos_label=pos_label, labels=[0, 1], **kw)),
        ]
    for ours, theirs in pairs_to_check:
        assert ours == pytest.approx(theirs, nan_ok=True)


def _sklearn_warnings(func, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        func(*args, **kwargs)
    return [(w.category, str(w.message)) for w in caught]


def test_single_class_zero_division():
    y = [M, M, M]
    # No benign sample: specificity is undefined. The warning is scikit-learn's own, the one
    # recall_score gives for the (absent) negative class.
    with pytest.warns(UndefinedMetricWarning, match="Recall is ill-defined"):
        assert specificity_score(y, y) == 0.0
    assert _sklearn_warnings(specificity_score, y, y) == _sklearn_warnings(
        recall_score, [True] * 3, [True] * 3, pos_label=False
    )
    assert math.isnan(specificity_score(y, y, zero_division=np.nan))
    assert specificity_score(y, y, zero_division=1.0) == 1.0
    assert sensitivity_score(y, y) == 1.0
    # Benign only: 'malignant' is still inferred as positive, sensitivity undefined.
    with pytest.warns(UndefinedMetricWarning, match="Recall is ill-defined"):
        assert sensitivity_score([B, B], [B, M]) == 0.0
    assert math.isnan(sensitivity_score([B, B], [B, M], zero_division=np.nan))
    assert specificity_score([B, B], [B, M]) == 0.5
    # Ints, only negatives: pos_label=1 absent is fine.
    assert confusion_counts([0, 0], [0, 0]) == (2, 0, 0, 0)


def test_no_warning_when_defined():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binary_report(Y_TRUE, Y_PRED, np.linspace(0, 1, 9))


@pytest.mark.parametrize("zero_division", ["nan", 0.5, None, -1])
def test_bad_zero_division(zero_division):
    for func in (sensitivity_score, specificity_score, binary_report):
        with pytest.raises(ValueError, match="zero_division"):
            func([0, 1], [0, 1], zero_division=zero_division)
    with pytest.raises(ValueError, match="zero_division"):
        get_scorers(zero_division=zero_division)


def test_precision_and_f1_warnings_are_sklearns():
    # Nothing predicted positive: precision is undefined, F1 is not (one positive in y_true).
    y_true, y_pred = [B, M], [B, B]
    ours = _sklearn_warnings(binary_report, y_true, y_pred)
    theirs = _sklearn_warnings(precision_score, [0, 1], [0, 0])
    assert ours == theirs
    assert "Precision is ill-defined" in theirs[0][1]


# --------------------------------------------------------------------------- pos_label


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        ([B, M], M),
        ([M, "normal"], M),
        ([B, B], M),
        ([0, 1], 1),
        ([1, 2], 1),
        ([-1, 1], 1),
        ([0.0, 1.0], 1),
        ([False, True], True),
    ],
)
def test_pos_label_inference(y, expected):
    y_true = np.asarray(y)
    y_pred = y_true[::-1]
    positives = int(np.sum(y_true == expected))
    _, _, fn, tp = confusion_counts(y_true, y_pred)
    assert tp + fn == positives


@pytest.mark.parametrize("y", [["cat", "dog"], ["a"]])
def test_pos_label_cannot_be_inferred(y):
    with pytest.raises(ValueError, match="pass pos_label"):
        sensitivity_score(y, y)
    # ... and works when given.
    assert sensitivity_score(y, y, pos_label=y[-1]) == 1.0


def test_pos_label_not_a_label():
    with pytest.raises(ValueError, match="pos_label=2 is not one of the classes"):
        sensitivity_score([0, 1], [0, 1], pos_label=2)
    # {0, 2}: the larger label is positive (skhybrid.class_roles), no longer an error.
    assert sensitivity_score([0, 2, 2], [0, 2, 0]) == 0.5
    with pytest.raises(ValueError, match="is not one of the classes"):
        binary_report([B, M], [B, M], pos_label="Malignant")


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([0, 1, 1], [0, 1], "different lengths"),
        ([], [], "empty"),
        ([0, 1, 2], [0, 1, 2], "Only binary"),
        ([0, 1, 1], [0, 1, 2], "Only binary"),
        ([0, 1], [0.2, 0.7], "continuous"),
        ([0, np.nan], [0, 1], "NaN"),
        ([0, 1], ["benign", "malignant"], "Mix of label input types"),
    ],
)
def test_invalid_labels(y_true, y_pred, match):
    for func in (sensitivity_score, specificity_score, confusion_counts, binary_report):
        with pytest.raises(ValueError, match=match):
            func(y_true, y_pred)


@pytest.mark.parametrize(
    ("y_score", "match"),
    [
        ([0.1, np.nan, 0.3, 0.4], "NaN"),
        ([0.1, np.inf, 0.3, 0.4], "NaN or infinity"),
        ([0.1, 0.2, 0.3], "different lengths"),
        (np.zeros((4, 3)), "shape"),
        (["a", "b", "c", "d"], "numeric"),
    ],
)
def test_invalid_scores(y_score, match):
    with pytest.raises(ValueError, match=match):
        binary_report([0, 0, 1, 1], [0, 1, 1, 1], y_score)


# --------------------------------------------------------------------------- report


def test_binary_report_hand_computed():
    score = [0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.6, 0.95]
    report = binary_report(Y_TRUE, Y_PRED, score)
    assert (report.tp, report.fp, report.fn, report.tn, report.n) == (3, 2, 1, 3, 9)
    assert report.accuracy == pytest.approx(6 / 9)
    assert report.sensitivity == pytest.approx(3 / 4)
    assert report.specificity == pytest.approx(3 / 5)
    assert report.precision == pytest.approx(3 / 5)
    assert report.f1 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    # Pairs (malignant, benign) ranked correctly: the 0.1 malignant loses to all 5
    # benign; the 0.95 benign beats all 4 malignant; 0.6 beats 0.1 only... counted:
    # malignant scores 0.9, 0.8, 0.7, 0.1 vs benign 0.2, 0.3, 0.4, 0.6, 0.95.
    wins = sum(m > b for m in (0.9, 0.8, 0.7, 0.1) for b in (0.2, 0.3, 0.4, 0.6, 0.95))
    assert wins == 12
    assert report.auc == pytest.approx(12 / 20)


def test_binary_report_proba_columns():
    y_true = [B, B, M, M]
    y_pred = [B, M, M, M]
    p_mal = np.array([0.1, 0.6, 0.4, 0.9])  # AUC = 3/4
    proba = np.column_stack([1 - p_mal, p_mal])  # columns: sorted classes (B, M)
    expected = binary_report(y_true, y_pred, p_mal).auc
    assert expected == pytest.approx(0.75)
    assert binary_report(y_true, y_pred, proba).auc == pytest.approx(expected)
    assert binary_report(y_true, y_pred, proba, classes=[B, M]).auc == pytest.approx(expected)
    # Explicit classes decide the column: reversed columns need reversed classes.
    reversed_proba = proba[:, ::-1]
    assert binary_report(y_true, y_pred, reversed_proba, classes=[M, B]).auc == pytest.approx(
        expected
    )
    assert binary_report(y_true, y_pred, reversed_proba).auc == pytest.approx(1 - expected)
    # pos_label=benign takes the other column: the AUC of the benign class is the same.
    assert binary_report(y_true, y_pred, proba, pos_label=B).auc == pytest.approx(expected)
    with pytest.raises(ValueError, match="classes"):
        binary_report(y_true, y_pred, proba, classes=["x", "y"])
    # A single column is accepted as 1-D.
    assert binary_report(y_true, y_pred, p_mal[:, None]).auc == pytest.approx(expected)


def test_binary_report_auc_nan():
    assert math.isnan(binary_report([0, 1], [0, 1]).auc)
    with pytest.warns(UndefinedMetricWarning):
        report = binary_report([1, 1], [1, 0], [0.2, 0.8])
    assert math.isnan(report.auc)
    # Single class with a 2-D score needs no column choice.
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(binary_report([1, 1], [1, 0], [[0.8, 0.2], [0.2, 0.8]]).auc)


def test_binary_report_dataclass():
    report = binary_report(Y_TRUE, Y_PRED)
    assert isinstance(report, BinaryReport)
    with pytest.raises(AttributeError):
        report.accuracy = 1.0
    d = report.to_dict()
    assert list(d) == [
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "auc",
        "tp",
        "fp",
        "fn",
        "tn",
        "n",
    ]
    assert d["tp"] == 3
    # auc is nan, and nan != nan, so compare the dicts value by value.
    restored = pickle.loads(pickle.dumps(report)).to_dict()
    assert restored == pytest.approx(d, nan_ok=True)


def test_binary_report_str():
    text = str(binary_report(Y_TRUE, Y_PRED))
    header, values, counts = text.splitlines()
    assert header.split() == ["Accuracy", "Sensitivity", "Specificity", "Precision", "F1", "AUC"]
    assert values.split() == ["66.67%", "75.00%", "60.00%", "60.00%", "66.67%", "nan"]
    assert counts == "TP=3  FP=2  FN=1  TN=3  (n=9)"


def test_format_reports_markdown_and_csv():
    reports = {
        "CNN": binary_report(Y_TRUE, Y_PRED),
        "Hybrid | SL": binary_report([0, 1, 1, 0], [0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]),
    }
    md = format_reports(reports, digits=1).splitlines()
    assert md[0] == (
        "| Model | Accuracy (%) | Sensitivity (%) | Specificity (%) | Precision (%) "
        "| F1 (%) | AUC (%) |"
    )
    assert md[1] == "|---|---:|---:|---:|---:|---:|---:|"
    assert md[2] == "| CNN | 66.7 | 75.0 | 60.0 | 60.0 | 66.7 | nan |"
    assert md[3] == "| Hybrid \\| SL | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |"

    rows = list(csv.reader(io.StringIO(format_reports(reports, fmt="csv", counts=True))))
    assert rows[0][-5:] == ["TP", "FP", "FN", "TN", "n"]
    assert rows[1] == [
        "CNN",
        "66.67",
        "75.00",
        "60.00",
        "60.00",
        "66.67",
        "nan",
        "3",
        "2",
        "1",
        "3",
        "9",
    ]
    assert rows[2][0] == "Hybrid | SL"

    with pytest.raises(ValueError, match="fmt"):
        format_reports(reports, fmt="latex")
    with pytest.raises(TypeError, match="BinaryReport"):
        format_reports({"x": {"accuracy": 1.0}})


# --------------------------------------------------------------------------- patient score


def test_patient_score_hand_computed():
    # Patient a: 3/4 correct, b: 1/1, c: 0/2 -> (0.75 + 1 + 0) / 3; accuracy is 4/7.
    y_true = [1, 1, 1, 1, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 1, 1]
    patients = ["a", "a", "a", "a", "b", "c", "c"]
    assert patient_score(y_true, y_pred, patients) == pytest.approx(1.75 / 3)
    # Order and id type do not matter.
    order = [6, 2, 4, 0, 5, 1, 3]
    ids = np.array([10, 10, 10, 10, 20, 30, 30])
    assert patient_score(
        np.take(y_true, order), np.take(y_pred, order), ids[order]
    ) == pytest.approx(1.75 / 3)
    # One patient per image: plain accuracy. Works for string and multiclass labels.
    assert patient_score([B, M, M], [B, B, M], [1, 2, 3]) == pytest.approx(2 / 3)
    assert patient_score([0, 1, 2], [0, 1, 1], [0, 0, 0]) == pytest.approx(2 / 3)


def test_patient_score_validation():
    with pytest.raises(ValueError, match="different lengths"):
        patient_score([0, 1], [0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        patient_score([], [], [])


# --------------------------------------------------------------------------- scorers


@pytest.fixture(scope="module")
def cv_data():
    X, y = make_classification(
        n_samples=120, n_features=6, n_informative=3, flip_y=0.15, random_state=0
    )
    groups = np.arange(len(y)) // 4  # 30 "patients" of 4 images
    return X, y, groups


def _reference_cv(estimator, X, y, groups, pos_label):
    """Per-fold metrics computed by hand with sklearn functions."""
    out = {"sensitivity": [], "specificity": [], "precision": [], "roc_auc": []}
    for train, test in GroupKFold(3).split(X, y, groups):
        est = estimator.fit(X[train], y[train])
        pred = est.predict(X[test])
        neg_label = next(c for c in est.classes_ if c != pos_label)
        out["sensitivity"].append(recall_score(y[test], pred, pos_label=pos_label))
        out["specificity"].append(recall_score(y[test], pred, pos_label=neg_label))
        out["precision"].append(precision_score(y[test], pred, pos_label=pos_label))
        proba = est.predict_proba(X[test])[:, list(est.classes_).index(pos_label)]
        out["roc_auc"].append(roc_auc_score(y[test] == pos_label, proba))
    return out


@pytest.mark.parametrize(
    ("labels", "pos_label", "expected_pos"),
    [
        ([0, 1], None, 1),
        ([B, M], None, M),
        ([1, 2], None, 2),  # scikit-learn's convention (skhybrid.class_roles): the larger
        ([0, 1], 0, 0),
        (["x", "y"], "x", "x"),
    ],
)
@pytest.mark.parametrize("estimator", [LogisticRegression(), KNeighborsClassifier(7)])
def test_scorers_cross_validate(cv_data, labels, pos_label, expected_pos, estimator):
    X, y01, groups = cv_data
    y = np.asarray(labels)[y01]
    scoring = SCORERS if pos_label is None else get_scorers(pos_label)
    cv = cross_validate(estimator, X, y, groups=groups, cv=GroupKFold(3), scoring=scoring)
    assert {f"test_{k}" for k in scoring} <= set(cv)
    reference = _reference_cv(estimator, X, y, groups, expected_pos)
    for name, values in reference.items():
        np.testing.assert_allclose(cv[f"test_{name}"], values, err_msg=name)
    # Better than chance, so a flipped AUC would fail.
    assert cv["test_roc_auc"].mean() > 0.7


def test_scorers_pos_label_changes_results(cv_data):
    X, y, groups = cv_data
    kw = {"groups": groups, "cv": GroupKFold(3)}
    pos1 = cross_validate(LogisticRegression(), X, y, scoring=get_scorers(1), **kw)
    pos0 = cross_validate(LogisticRegression(), X, y, scoring=get_scorers(0), **kw)
    np.testing.assert_allclose(pos1["test_sensitivity"], pos0["test_specificity"])
    np.testing.assert_allclose(pos1["test_roc_auc"], pos0["test_roc_auc"])
    np.testing.assert_allclose(pos1["test_accuracy"], pos0["test_accuracy"])


def test_scorers_keys_and_pickle():
    assert list(SCORERS) == ["accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]
    restored = pickle.loads(pickle.dumps(get_scorers(M)))
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([B, B, M, M])
    est = LogisticRegression().fit(X, y)
    assert restored["roc_auc"](est, X, y) == 1.0
    assert restored["sensitivity"](est, X, y) == 1.0


# --------------------------------------------------------------------------- plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    y = np.array([B] * 30 + [M] * 30)
    s = np.clip(rng.normal(0.35, 0.2, 60) + 0.3 * (y == M), 0, 1)
    return y, s


def test_plots_write_png(tmp_path, scores):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    y, s = scores
    displays = [
        plot_roc_curve(y, s, tmp_path / "roc.png", label="image"),
        plot_precision_recall_curve(y, s, tmp_path / "pr.png"),
        plot_confusion_matrix(y, np.where(s > 0.5, M, B), tmp_path / "cm.png"),
        plot_confusion_matrix(y, np.where(s > 0.5, M, B), tmp_path / "cmn.png", normalize="true"),
    ]
    kinds = [
        RocCurveDisplay,
        PrecisionRecallDisplay,
        ConfusionMatrixDisplay,
        ConfusionMatrixDisplay,
    ]
    assert all(isinstance(d, kind) for d, kind in zip(displays, kinds))
    assert all(isinstance(d.figure_, Figure) and d.ax_.figure is d.figure_ for d in displays)
    for name in ("roc.png", "pr.png", "cm.png", "cmn.png"):
        _assert_png(tmp_path / name)


def test_plots_several_curves(tmp_path, scores):
    pytest.importorskip("matplotlib")
    y, s = scores
    displays = plot_roc_curve(y, {"tiles": s, "images": 1 - s}, tmp_path / "two.png")
    assert list(displays) == ["tiles", "images"]
    assert displays["tiles"].ax_ is displays["images"].ax_ is displays.ax_
    legend = [t.get_text() for t in displays.ax_.get_legend().get_texts()]
    auc = roc_auc_score(y == M, s)
    assert displays["tiles"].roc_auc == pytest.approx(auc)
    assert legend == [
        f"tiles (AUC = {auc:.2f})",
        "Chance level (AUC = 0.5)",
        f"images (AUC = {1 - auc:.2f})",
    ]
    # Curves on different samples share axes through ax=.
    first = plot_precision_recall_curve(y, s, label="images")
    second = plot_precision_recall_curve(y[:40], s[:40], ax=first.ax_, label="tiles")
    assert second.figure_ is first.figure_
    legend = [t.get_text() for t in first.ax_.get_legend().get_texts()]
    assert [t.split(" (")[0] for t in legend] == [
        "images",
        "images chance level",
        "tiles",
        "tiles chance level",
    ]
    # Confusion-matrix cells hold the counts, negative class first.
    cm = plot_confusion_matrix(Y_TRUE, Y_PRED)
    cells = [t.get_text() for t in cm.text_.ravel()]
    assert cells == ["3", "2", "1", "3"]
    assert [t.get_text() for t in cm.ax_.get_xticklabels()] == [B, M]
    np.testing.assert_array_equal(cm.confusion_matrix, [[3, 2], [1, 3]])


def test_roc_curve_points_are_sklearns(scores):
    pytest.importorskip("matplotlib")
    from sklearn.metrics import roc_curve

    y, s = scores
    display = plot_roc_curve(y, s)
    fpr, tpr, _ = roc_curve(y, s, pos_label=M)
    np.testing.assert_array_equal(display.fpr, fpr)
    np.testing.assert_array_equal(display.tpr, tpr)
    np.testing.assert_array_equal(display.line_.get_xdata(), fpr)
    np.testing.assert_array_equal(display.line_.get_ydata(), tpr)
    # A predict_proba array with classes given in reverse order gives the same curve.
    reversed_proba = np.column_stack([s, 1 - s])
    again = plot_roc_curve(y, reversed_proba, classes=[M, B])
    np.testing.assert_array_equal(again.tpr, tpr)
    # A second curve on the same axes: the (same) diagonal is not drawn again.
    assert again.chance_level_ is not None
    second = plot_roc_curve(y[:40], s[:40], ax=again.ax_, label="tiles")
    assert second.chance_level_ is None
    diagonals = [line for line in again.ax_.lines if list(line.get_xdata()) == [0, 1]]
    assert len(diagonals) == 1


def test_precision_recall_chance_line_per_curve(scores):
    pytest.importorskip("matplotlib")
    y, s = scores
    first = plot_precision_recall_curve(y, s, label="images")  # 30 of 60 malignant
    tiles = slice(20, 60)  # 10 benign, 30 malignant: prevalence 0.75
    second = plot_precision_recall_curve(y[tiles], s[tiles], ax=first.ax_, label="tiles")
    assert second.prevalence_pos_label == pytest.approx(0.75)
    # Each curve has a horizontal chance line at the prevalence of its own y_true.
    horizontal = sorted(
        float(line.get_ydata()[0])
        for line in first.ax_.lines
        if len(set(np.asarray(line.get_ydata(), float))) == 1
    )
    assert horizontal == pytest.approx([0.5, 0.75])
    np.testing.assert_allclose(second.chance_level_.get_ydata(), 0.75)
    # ... drawn in the colour of its curve.
    assert second.chance_level_.get_color() == second.line_.get_color()
    assert first.line_.get_color() != second.line_.get_color()


def test_plots_return_displays_that_still_act_as_the_figure(tmp_path, scores):
    """Before, the plots returned the Figure: its attributes still work, with a warning."""
    pytest.importorskip("matplotlib")
    y, s = scores
    # workflow.py's call: one level at a time on shared axes, then saved.
    fig = plot_roc_curve(y, s, pos_label=M, ax=None, label="image")
    with pytest.warns(FutureWarning, match=r"\.figure_\.axes"):
        ax = fig.axes[0]
    assert ax is fig.ax_
    fig = plot_roc_curve(y[:40], s[:40], pos_label=M, ax=ax, label="tile")
    with pytest.warns(FutureWarning, match="savefig"):
        fig.savefig(tmp_path / "levels.png")
    _assert_png(tmp_path / "levels.png")
    with pytest.warns(FutureWarning):
        assert plot_roc_curve(y, {"a": s}).axes[0] is not None
    with pytest.raises(AttributeError, match="no_such_thing"):
        fig.no_such_thing  # noqa: B018


def test_plots_leave_pyplot_alone(scores):
    plt = pytest.importorskip("matplotlib.pyplot")
    y, s = scores
    before = plt.get_fignums()
    plot_roc_curve(y, s)
    plot_roc_curve(y, {"a": s, "b": 1 - s})
    plot_precision_recall_curve(y, s)
    plot_confusion_matrix(y, np.where(s > 0.5, M, B))
    assert plt.get_fignums() == before


def test_plot_errors(tmp_path, scores):
    pytest.importorskip("matplotlib")
    y, s = scores
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_roc_curve(y, s, tmp_path / "missing" / "roc.png")
    with pytest.raises(ValueError, match="both classes"):
        plot_roc_curve([M, M], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        plot_precision_recall_curve(y, np.full(len(y), np.nan))
    with pytest.raises(ValueError, match="empty dict"):
        plot_roc_curve(y, {})
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion_matrix(y, y, normalize="rows")


@pytest.mark.parametrize(
    "plot",
    [
        lambda: plot_roc_curve([0, 1], [0.1, 0.9]),
        lambda: plot_precision_recall_curve([0, 1], [0.1, 0.9]),
        lambda: plot_confusion_matrix([0, 1], [0, 1]),
    ],
)
def test_plots_without_matplotlib(monkeypatch, plot):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"pip install 'skhybrid\[plots\]'"):
        plot()


# --------------------------------------------------------------------------- docs


@pytest.mark.parametrize("module", ["_classification", "_patient", "_scorer"])
def test_docstring_examples(module):
    result = doctest.testmod(
        importlib.import_module(f"skhybrid.metrics.{module}"),
        optionflags=doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0
    assert result.failed == 0


def test_names_of_the_former_module_still_import():
    """Every name of the single-file skhybrid.metrics is still importable from it."""
    former = [
        "SCORERS", "BinaryReport", "binary_report", "confusion_counts", "format_reports",
        "get_scorers", "patient_score", "plot_confusion_matrix", "plot_precision_recall_curve",
        "plot_roc_curve", "sensitivity_score", "specificity_score", "DEFAULT_POS_LABEL",
        "_REPORT_COLUMNS", "_REPORT_HEADERS", "_COUNT_COLUMNS", "_precision_score", "_f1_score",
        "_roc_auc_score", "_positive_scores", "_as_labels",
    ]  # fmt: skip
    assert [name for name in former if not hasattr(metrics, name)] == []
    assert set(metrics.__all__) <= set(dir(metrics))
    assert metrics.DEFAULT_POS_LABEL == "malignant"
    assert metrics._REPORT_COLUMNS == ("accuracy", "sensitivity", "specificity", "precision",
                                       "f1", "auc")  # fmt: skip


def test_scorers_in_worker_processes(cv_data):
    # n_jobs=2 pickles the scorers (functions wrapped by validate_params) into loky workers.
    X, y, groups = cv_data
    kw = {"groups": groups, "cv": GroupKFold(3), "scoring": get_scorers(0)}
    serial = cross_validate(LogisticRegression(), X, y, n_jobs=1, **kw)
    parallel = cross_validate(LogisticRegression(), X, y, n_jobs=2, **kw)
    for key in ("test_sensitivity", "test_specificity", "test_f1", "test_roc_auc"):
        np.testing.assert_array_equal(serial[key], parallel[key], err_msg=key)
