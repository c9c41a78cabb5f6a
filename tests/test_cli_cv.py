"""`skhybrid train --cv`: repeated patient-wise CV, per-image / per-patient files, provenance.

One tiny CLI run (a generated BreakHis tree, 16x16 tiles, one epoch) serves every test; the
tests check that what it wrote is *true*: the files agree with each other and with the data.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.metadata
import io
import json
import re
from collections import Counter

import numpy as np
import pytest
from _breakhis_tree import make_breakhis_tree

from skhybrid.cli import main
from skhybrid.evaluation import METRICS
from skhybrid.model_io import load_model
from skhybrid.reporting import PROVENANCE_PACKAGES

K, R = 3, 2
TINY = [
    "--recipe",
    "paper",
    "--tile-size",
    "16",
    "--backbone",
    "resnet18",
    "--weights",
    "none",
    "--epochs",
    "1",
    "--batch-size",
    "32",
]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakhis")
    # 12 images per class at one magnification: 8 slides per class, enough for 3 folds.
    make_breakhis_tree(root, n_per_class=12, magnifications=(40,))
    return root


@pytest.fixture(scope="module")
def cv_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv")
    argv = [
        "train", str(tree), *TINY, "--self-learning-rounds", "1", "--out", str(out),
        "--cv", str(K), "--repeats", str(R), "--baseline", "--resamples", "200",
    ]  # fmt: skip
    # capsys is function-scoped; the run is module-scoped, so its output is captured here.
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([*argv, "-q"])
    after = datetime.datetime.now(datetime.timezone.utc)
    assert code == 0
    return {
        "out": out,
        "argv": argv,
        "stdout": stdout.getvalue(),
        "window": (before, after),
        "report": json.loads((out / "report.json").read_text()),
        "predictions": read_csv(out / "predictions.csv"),
        "patients": read_csv(out / "patients.csv"),
    }


def test_train_cv_writes_every_file(cv_run):
    names = {p.name for p in cv_run["out"].iterdir()}
    expected = {"report.json", "predictions.csv", "patients.csv", "model.joblib"}
    assert expected | {"self_learning_history.md"} <= names


def test_report_holds_k_times_r_folds_and_intervals(cv_run):
    cv = cv_run["report"]["cross_validation"]
    assert cv_run["report"]["protocol"] == "patient-cv"
    assert len(cv["folds"]) == K * R
    assert Counter(fold["repeat"] for fold in cv["folds"]) == {r: K for r in range(R)}
    assert cv["n_repeats"] == R and cv["n_resamples"] == 200
    for name in METRICS:
        interval = cv["intervals"][name]
        assert interval["low"] <= interval["estimate"] <= interval["high"]
        assert name in cv["baseline_intervals"] and name in cv["differences"]


def test_printed_metrics_are_estimate_and_interval(cv_run):
    cv = cv_run["report"]["cross_validation"]
    for name in ("accuracy", "auc", "patient_score"):
        line = re.search(rf"^\| {name} \| (\S+) \[(\S+), (\S+)\]", cv_run["stdout"], re.M)
        assert line, cv_run["stdout"]
        printed = [float(v) for v in line.groups()]
        interval = cv["intervals"][name]
        expected = [interval["estimate"], interval["low"], interval["high"]]
        assert printed == pytest.approx(expected, abs=5e-4)
    assert "Model - baseline" in cv_run["stdout"]


def test_predictions_have_one_row_per_image_and_repeat(cv_run, tree):
    rows = cv_run["predictions"]
    files = sorted(str(p) for p in tree.rglob("*.png"))
    assert len(rows) == R * len(files)
    assert Counter((r["repeat"], r["file"]) for r in rows) == {
        (str(r), f): 1 for r in range(R) for f in files
    }
    assert {r["magnification"] for r in rows} == {"40X"}
    assert all(len(r["tile_proba_malignant"].split(";")) == 9 for r in rows)
    # Each fold tests whole patients: no patient in two folds of one repeat.
    fold_of = {}
    for r in rows:
        assert fold_of.setdefault((r["repeat"], r["patient"]), r["fold"]) == r["fold"]


def test_predictions_agree_with_the_reported_folds_and_intervals(cv_run):
    cv = cv_run["report"]["cross_validation"]
    rows = cv_run["predictions"]
    for fold in cv["folds"]:
        mine = [r for r in rows if int(r["fold"]) == fold["fold"]]
        assert len(mine) == fold["n_test"]
        assert {int(r["repeat"]) for r in mine} == {fold["repeat"]}
        truth = np.array([r["true_label"] for r in mine])
        pred = np.array([r["predicted_label"] for r in mine])
        assert fold["tp"] == np.sum((truth == "malignant") & (pred == "malignant"))
        assert fold["fp"] == np.sum((truth == "benign") & (pred == "malignant"))
        assert fold["fn"] == np.sum((truth == "malignant") & (pred == "benign"))
        assert fold["tn"] == np.sum((truth == "benign") & (pred == "benign"))
        assert fold["accuracy"] == pytest.approx(np.mean(truth == pred))
    # The interval's estimate: the metric on each repeat's pooled predictions, averaged.
    accuracy = np.mean([
        np.mean([r["correct"] == "1" for r in rows if r["repeat"] == str(k)]) for k in range(R)
    ])  # fmt: skip
    assert accuracy == pytest.approx(cv["intervals"]["accuracy"]["estimate"])


def test_patients_csv_agrees_with_the_patient_recognition_rate(cv_run):
    cv = cv_run["report"]["cross_validation"]
    patients, rows = cv_run["patients"], cv_run["predictions"]
    assert len(patients) == R * len({r["patient"] for r in rows})
    for p in patients:
        mine = [r for r in rows if r["repeat"] == p["repeat"] and r["patient"] == p["patient"]]
        assert int(p["images"]) == len(mine)
        assert int(p["correct"]) == sum(r["correct"] == "1" for r in mine)
        assert p["true_label"] == mine[0]["true_label"]
    rate = np.mean([
        np.mean([float(p["accuracy"]) for p in patients if p["repeat"] == str(k)])
        for k in range(R)
    ])  # fmt: skip
    assert rate == pytest.approx(cv["intervals"]["patient_score"]["estimate"], abs=1e-6)


def test_provenance_is_present_and_true(cv_run, tree):
    record = cv_run["report"]["provenance"]
    for name in PROVENANCE_PACKAGES:
        assert record["versions"][name] == importlib.metadata.version(name)
    assert record["command"] == ["skhybrid", *cv_run["argv"], "-q"]
    files = list(tree.rglob("*.png"))
    slides = {p.parent.parent.name for p in files}
    assert record["data"]["root"] == str(tree.resolve())
    assert record["data"]["magnification"] is None
    assert record["data"]["n_images"] == len(files)
    assert record["data"]["n_patients"] == len(slides)
    assert record["data"]["n_tiles"] == 9 * len(files)
    assert record["split"] == {
        "protocol": "patient-cv", "n_splits": K, "n_repeats": R, "random_state": 0,
    }  # fmt: skip
    classifier = load_model(cv_run["out"] / "model.joblib").steps[-1][1]
    assert record["runtime"] == {"device": classifier.device_, "precision": classifier.precision_}
    assert record["runtime"]["device"] != "auto" and record["runtime"]["precision"] != "auto"
    started = datetime.datetime.fromisoformat(record["started_utc"])
    before, after = cv_run["window"]
    assert before <= started <= after
    assert 0 < record["seconds"] <= (after - before).total_seconds() + 1


def test_the_final_model_is_fitted_on_all_images(cv_run, tree):
    history = cv_run["report"]["self_learning_history"]
    n_images = len(list(tree.rglob("*.png")))
    assert sum(history[0]["class_counts"].values()) == 9 * n_images


def test_evaluate_writes_predictions_that_agree_with_its_report(cv_run, tree, tmp_path):
    out = tmp_path / "eval"
    code = main(["evaluate", str(cv_run["out"] / "model.joblib"), str(tree), "--out", str(out),
                 "-q"])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    rows, patients = read_csv(out / "predictions.csv"), read_csv(out / "patients.csv")
    image = report["reports"]["image"]
    assert len(rows) == image["n"] == report["provenance"]["data"]["n_images"]
    truth = np.array([r["true_label"] for r in rows])
    pred = np.array([r["predicted_label"] for r in rows])
    assert image["tp"] == np.sum((truth == "malignant") & (pred == "malignant"))
    assert image["tn"] == np.sum((truth == "benign") & (pred == "benign"))
    assert image["accuracy"] == pytest.approx(np.mean(truth == pred))
    rate = np.mean([float(p["accuracy"]) for p in patients])
    assert rate == pytest.approx(report["patient_score"], abs=1e-6)
    classifier = load_model(cv_run["out"] / "model.joblib").steps[-1][1]
    assert report["provenance"]["runtime"]["device"] == classifier.device_
    assert report["provenance"]["versions"]["torch"] == importlib.metadata.version("torch")


def test_cv_with_the_leaky_split_is_a_user_error(tree, tmp_path, capsys):
    code = main(["train", str(tree), *TINY, "--cv", "3", "--split", "random-tile",
                 "--out", str(tmp_path), "-q"])  # fmt: skip
    assert code == 1
    assert "--cv folds are patient-wise" in capsys.readouterr().err


def test_cv_with_too_few_patients_is_a_data_error(tree, tmp_path, capsys):
    code = main(["train", str(tree), *TINY, "--cv", "9", "--out", str(tmp_path), "-q"])
    assert code == 1
    assert "at least 9 patients of each class" in capsys.readouterr().err


def test_cv_options_are_checked_by_argparse(tree):
    with pytest.raises(SystemExit) as excinfo:
        main(["train", str(tree), "--cv", "1"])
    assert excinfo.value.code == 2
