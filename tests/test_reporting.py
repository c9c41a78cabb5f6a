"""predictions.csv, patients.csv and provenance: what skhybrid.reporting writes, read back."""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import sys

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from skhybrid.datasets import make_histology
from skhybrid.exceptions import DataError
from skhybrid.metrics import patient_score
from skhybrid.reporting import (
    PROVENANCE_PACKAGES,
    patient_rows,
    prediction_rows,
    provenance,
    utc_now,
    write_outputs,
)
from skhybrid.tiling import SubImageTiler
from skhybrid.workflow import make_baseline, run_cross_validation, run_experiment


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class MeanColourClassifier(ClassifierMixin, BaseEstimator):
    """A seconds-fast stand-in for the CNNs: logistic regression on each tile's mean colour.

    It has what the workflow needs of a skhybrid classifier: ``fit(bags, tile_labels,
    groups=)``, ``predict_proba`` per image (mean of tiles), ``predict_proba_tiles``, and it
    records the images it was fitted on (``n_fit_images_``).
    """

    def __init__(self, aggregation="mean"):
        self.aggregation = aggregation

    def fit(self, bags, y, groups=None):
        bags = np.asarray(bags)
        tile_y = np.broadcast_to(np.asarray(y).reshape(len(bags), -1), bags.shape[:2])
        self.logistic_ = LogisticRegression().fit(self._features(bags), tile_y.reshape(-1))
        self.classes_ = self.logistic_.classes_
        self.n_fit_images_ = len(bags)
        self.device_, self.precision_ = "cpu", "fp32"
        return self

    @staticmethod
    def _features(bags):
        return np.asarray(bags, dtype=float).mean(axis=(2, 3)).reshape(-1, 3)

    def predict_proba_tiles(self, bags):
        proba = self.logistic_.predict_proba(self._features(bags))
        return proba.reshape(len(bags), -1, len(self.classes_))

    def predict_proba(self, bags):
        return self.predict_proba_tiles(bags).mean(axis=1)

    def predict(self, bags):
        return self.classes_[self.predict_proba(bags).argmax(axis=1)]


@pytest.fixture(scope="module")
def histology():
    data = make_histology(n_images=36, n_patients=12, image_size=(46, 70), random_state=0)
    return np.asarray(data.target_names)[data.target], data


# -- prediction_rows / patient_rows ------------------------------------------------------------
def test_prediction_rows_hold_labels_probabilities_and_positive_tiles():
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    tiles = np.array([[[0.9, 0.1], [0.7, 0.3]], [[0.2, 0.8], [0.4, 0.6]], [[0.5, 0.5]] * 2])
    rows = prediction_rows(
        ["benign", "malignant"],
        ["benign", "malignant", "malignant"],
        proba,
        tile_proba=tiles,
        columns={"image": [0, 1, 2], "patient": ["a", "a", "b"]},
    )
    assert [r["predicted_label"] for r in rows] == ["benign", "malignant", "benign"]
    assert [r["correct"] for r in rows] == [1, 1, 0]
    assert list(rows[0])[:2] == ["image", "patient"]
    assert rows[1]["proba_malignant"] == 0.7
    # The positive class's tile probabilities, in tile order.
    assert [float(p) for p in rows[0]["tile_proba_malignant"].split(";")] == [0.1, 0.3]


def test_patient_rows_count_images_and_give_the_patient_recognition_rate():
    y = np.array(["B", "B", "B", "M", "M", "M", "M"])
    pred = np.array(["B", "M", "B", "M", "M", "B", "M"])
    patients = np.array(["p1", "p1", "p2", "p3", "p3", "p3", "p4"])
    rows = prediction_rows(
        ["B", "M"], y, np.eye(2)[(pred == "M").astype(int)], columns={"patient": patients}
    )
    table = {row["patient"]: row for row in patient_rows(rows)}
    assert table["p1"] == {
        "patient": "p1", "true_label": "B", "images": 2, "correct": 1, "accuracy": 0.5,
    }  # fmt: skip
    assert table["p3"]["images"] == 3 and table["p3"]["correct"] == 2
    rate = np.mean([row["accuracy"] for row in table.values()])
    assert rate == pytest.approx(patient_score(y, pred, patients))


def test_patient_rows_are_per_repeat_when_the_rows_have_one():
    rows = [
        {"repeat": r, "patient": p, "true_label": "B", "correct": c}
        for r, p, c in [(0, "a", 1), (0, "a", 0), (1, "a", 1), (1, "a", 1)]
    ]
    table = patient_rows(rows)
    assert [(row["repeat"], row["accuracy"]) for row in table] == [(0, 0.5), (1, 1.0)]


# -- provenance --------------------------------------------------------------------------------
def test_provenance_records_the_installed_versions_and_the_command_line():
    record = provenance()
    assert set(record["versions"]) == set(PROVENANCE_PACKAGES)
    for name in PROVENANCE_PACKAGES:
        assert record["versions"][name] == importlib.metadata.version(name)
    assert record["command"] == sys.argv
    assert provenance(["skhybrid", "train"])["command"] == ["skhybrid", "train"]


def test_utc_now_is_iso_8601_in_utc():
    moment = datetime.datetime.fromisoformat(utc_now())
    assert moment.utcoffset() == datetime.timedelta(0)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - moment).total_seconds()) < 5


def test_write_outputs_writes_csvs_and_completes_the_provenance(tmp_path):
    rows = prediction_rows(
        ["benign", "malignant"],
        ["benign", "malignant"],
        [[0.9, 0.1], [0.2, 0.8]],
        columns={"image": [0, 1], "patient": ["p", "q"]},
    )
    summary = {"accuracy": 1.0, "provenance": {"command": ["mine"], "seconds": 3}}
    written = write_outputs(tmp_path, summary, predictions=rows)
    assert [p.name for p in written] == ["report.json", "predictions.csv", "patients.csv"]
    back = read_csv(tmp_path / "predictions.csv")
    assert [r["predicted_label"] for r in back] == ["benign", "malignant"]
    assert float(back[1]["proba_malignant"]) == 0.8
    assert [r["patient"] for r in read_csv(tmp_path / "patients.csv")] == ["p", "q"]
    report = json.loads((tmp_path / "report.json").read_text())
    # The caller's entries win; the versions are added.
    assert report["provenance"]["command"] == ["mine"]
    assert report["provenance"]["seconds"] == 3
    assert report["provenance"]["versions"]["numpy"] == importlib.metadata.version("numpy")
    assert summary["provenance"] == {"command": ["mine"], "seconds": 3}  # not modified


def test_write_outputs_without_predictions_writes_no_csv(tmp_path):
    write_outputs(tmp_path, {"a": 1})
    assert not (tmp_path / "predictions.csv").exists()
    assert "versions" in json.loads((tmp_path / "report.json").read_text())["provenance"]


# -- the workflow's tables agree with its reports ----------------------------------------------
def test_the_split_protocol_writes_the_test_images_consistent_with_the_report(histology, tmp_path):
    y, data = histology
    names = np.array([f"img{i}.png" for i in range(len(y))])
    result = run_experiment(
        data.images, y, data.patient, classifier=MeanColourClassifier(),
        tiler=SubImageTiler(tile_size=(16, 16)), self_learning_rounds=0, verbose=0,
        image_info={"file": names},
    )  # fmt: skip
    result.save(tmp_path, save_model=False)
    report = json.loads((tmp_path / "report.json").read_text())
    rows = read_csv(tmp_path / "predictions.csv")
    image = report["reports"]["image"]
    assert len(rows) == report["info"]["n_test"] == image["n"]
    assert all(r["file"] == names[int(r["image"])] for r in rows)
    assert all(r["patient"] == data.patient[int(r["image"])] for r in rows)
    truth = np.array([r["true_label"] for r in rows])
    pred = np.array([r["predicted_label"] for r in rows])
    assert np.mean(truth == pred) == pytest.approx(image["accuracy"])
    counts = {
        "tp": np.sum((truth == "malignant") & (pred == "malignant")),
        "fp": np.sum((truth == "benign") & (pred == "malignant")),
        "fn": np.sum((truth == "malignant") & (pred == "benign")),
        "tn": np.sum((truth == "benign") & (pred == "benign")),
    }
    assert counts == {key: image[key] for key in counts}
    patients = read_csv(tmp_path / "patients.csv")
    rate = np.mean([float(p["accuracy"]) for p in patients])
    assert rate == pytest.approx(report["patient_score"])
    assert sum(int(p["images"]) for p in patients) == len(rows)
    assert report["info"]["device"] == "cpu" and report["info"]["precision"] == "fp32"


def test_cross_validation_relabels_on_each_folds_training_images_only(histology, monkeypatch):
    import skhybrid.workflow as workflow

    y, data = histology
    seen = []
    original = workflow._self_learning_step

    def spy(bags, y_, groups, **kwargs):
        seen.append(set(np.unique(groups).tolist()))
        return original(bags, y_, groups, **kwargs)

    monkeypatch.setattr(workflow, "_self_learning_step", spy)
    result = run_cross_validation(
        data.images, y, data.patient, classifier=MeanColourClassifier(),
        tiler=SubImageTiler(tile_size=(16, 16)), n_splits=3, n_repeats=2,
        self_learning_rounds=1, baseline=make_baseline(0), n_resamples=50, verbose=0,
    )  # fmt: skip
    folds = result.cv.folds
    fitted = result.info["n_folds_fitted"]
    assert len(seen) == fitted + 1  # one relabeling per distinct fold, one for the final model
    assert seen[-1] == set(data.patient.tolist())
    test_patients = {
        frozenset(r["patient"] for r in result.predictions if r["fold"] == f["fold"]) for f in folds
    }
    for patients_seen in seen[:-1]:
        # The relabeler of a fold saw exactly the patients outside one test fold.
        assert any(
            patients_seen == set(data.patient.tolist()) - set(test) for test in test_patients
        )
    # One out-of-fold row per image and repeat, and the final model saw every image.
    assert len(result.predictions) == 2 * len(y)
    assert result.model.steps[-1][1].n_fit_images_ == len(y)
    assert result.cv.differences is not None


def test_cross_validation_needs_n_splits_patients_per_class(histology):
    y, data = histology
    with pytest.raises(DataError, match="at least 7 patients of each class"):
        run_cross_validation(
            data.images, y, data.patient, classifier=MeanColourClassifier(),
            tiler=SubImageTiler(tile_size=(16, 16)), n_splits=7, verbose=0,
        )  # fmt: skip
