"""``skhybrid train`` fits the recommended recipe by default; ``--recipe paper`` is the network.

The recommended recipe (colour/texture statistics, a balanced LR + SVM vote, a threshold tuned
on inner patient folds) is what measured best on real tissue (docs/results.md). These tests
check that the command line trains it by default, that its threshold is part of the saved
model and of ``report.json``, that ``evaluate`` and ``predict`` decide with that threshold,
and that network options are refused with it rather than ignored.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _breakhis_tree import make_breakhis_tree

from skhybrid import load_model
from skhybrid.cli import main
from skhybrid.recipes import PatientThresholdClassifier


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakhis")
    make_breakhis_tree(root, n_per_class=24, image_size=(92, 140), magnifications=(40,))
    return root


@pytest.fixture(scope="module")
def trained(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe")
    assert main(["train", str(tree), "--out", str(out), "-q"]) == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as file:
        return list(csv.DictReader(file))


def _decided_by_threshold(rows: list[dict[str, str]], threshold: float) -> None:
    """Every row's label is the threshold rule on its probability, not the larger column."""
    for row in rows:
        expected = "malignant" if float(row["proba_malignant"]) >= threshold else "benign"
        assert row["predicted_label"] == expected, row


def test_train_fits_the_recommended_recipe_by_default(trained):
    report = json.loads((trained / "report.json").read_text())
    info = report["info"]
    assert info["recipe"] == "recommended"
    model = load_model(trained / "model.joblib")
    classifier = model.named_steps["classifier"]
    assert isinstance(classifier, PatientThresholdClassifier)
    # The threshold in the report is the fitted model's, chosen on inner patient folds.
    decision = info["decision"]
    assert decision["threshold"] == pytest.approx(classifier.threshold_, abs=1e-6)
    assert 0.0 < decision["threshold"] < 1.0
    assert decision["inner_balanced_accuracy"] >= decision["inner_balanced_accuracy_at_0.5"]
    assert decision["calibration"] is None and decision["positive_class"] == "malignant"
    # Held-out patients only, and the tree's tissue classes are learnt.
    assert info["n_train"] + info["n_test"] == 24 * 2
    assert report["reports"]["image"]["auc"] >= 0.8
    rows = _rows(trained / "predictions.csv")
    assert len(rows) == info["n_test"]
    _decided_by_threshold(rows, classifier.threshold_)
    assert not (trained / "run.json").exists()  # nothing to resume: no network is trained


def test_evaluate_and_predict_decide_with_the_recipes_threshold(trained, tree, tmp_path, capsys):
    model = load_model(trained / "model.joblib")
    threshold = model.named_steps["classifier"].threshold_
    out = tmp_path / "eval"
    argv = ["evaluate", str(trained / "model.joblib"), str(tree), "--out", str(out), "-q"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["decision"]["threshold"] == pytest.approx(threshold, abs=1e-6)
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 48
    _decided_by_threshold(rows, threshold)
    capsys.readouterr()

    # predict: two files of different sizes (BreakHis has 700x456 among its 700x460 images),
    # results in the order given, each decided by the threshold; no tile grid.
    files = sorted(tree.rglob("*.png"))[:2]
    small = tmp_path / "cropped.png"
    Image.open(files[1]).crop((0, 0, 130, 88)).save(small)
    assert (
        main(["predict", str(trained / "model.joblib"), str(files[0]), str(small), "--json"]) == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in results] == [str(files[0]), str(small)]
    for entry in results:
        assert "tile_probability_grid" not in entry
        malignant = entry["probability"]["malignant"]
        assert entry["label"] == ("malignant" if malignant >= threshold else "benign")
        images = np.asarray(Image.open(entry["image"]).convert("RGB"))[None]
        assert malignant == pytest.approx(model.predict_proba(images)[0, 1], abs=1e-4)


def test_predict_refuses_an_overlay_of_a_whole_image_recipe(trained, tree, tmp_path, capsys):
    image = str(sorted(tree.rglob("*.png"))[0])
    argv = ["predict", str(trained / "model.joblib"), image, "--overlay", str(tmp_path)]
    assert main(argv) == 1
    assert "--overlay draws tile probabilities" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--backbone", "resnet18"],
            "--backbone configure(s) the network recipe: add --recipe paper",
        ),
        (["--epochs=3", "--tile-size", "64"], "--epochs, --tile-size configure(s) the network"),
        (["--recipe", "recommended", "--self-learning-rounds", "2"], "--recipe recommended"),
        (["--target", "subtype"], "train the subtypes with --recipe paper"),
        (["--recipe", "paper", "--calibration", "sigmoid"], "an option of the recommended recipe"),
    ],
)
def test_network_options_are_refused_with_the_recommended_recipe(tmp_path, capsys, extra, message):
    # Refused before any image is read: the data folder does not even exist.
    assert main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_train_with_the_default_recipe_on_the_real_sample(breakhis_sample, tmp_path, capsys):
    # The real BreakHis sample tree (23 full 700x460 images): the default recipe finishes
    # and reports its threshold.
    out = tmp_path / "real"
    assert main(["train", str(breakhis_sample), "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["recipe"] == "recommended"
    assert 0.0 < report["info"]["decision"]["threshold"] < 1.0
    assert report["info"]["n_images"] == 23
    model = load_model(out / "model.joblib")
    _decided_by_threshold(_rows(out / "predictions.csv"), model[-1].threshold_)


def test_cross_validation_of_the_recommended_recipe(tree, tmp_path):
    out = tmp_path / "cv"
    argv = ["train", str(tree), "--cv", "3", "--repeats", "2", "--baseline", "--out", str(out)]
    assert main([*argv, "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "patient-cv"
    cv = report["cross_validation"]
    assert cv["n_repeats"] == 2 and len(cv["folds"]) == 6
    for name in ("balanced_accuracy", "auc", "sensitivity", "specificity"):
        interval = cv["intervals"][name]
        assert interval["low"] <= interval["estimate"] <= interval["high"]
    assert cv["baseline_intervals"] is not None and cv["differences"] is not None
    assert cv["intervals"]["auc"]["estimate"] >= 0.8  # the tree's tissue classes are learnt
    # Every image once per repeat, predicted by a fold that did not train on its patient.
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 2 * 48
    for repeat in ("0", "1"):
        images = sorted(int(r["image"]) for r in rows if r["repeat"] == repeat)
        assert images == list(range(48))
    # The saved model is the recipe refitted on all images, its threshold in the report.
    model = load_model(out / "model.joblib")
    threshold = model.named_steps["classifier"].threshold_
    assert report["info"]["decision"]["threshold"] == pytest.approx(threshold, abs=1e-6)
    assert report["info"]["recipe"] == "recommended"


def test_calibration_is_part_of_the_saved_recipe(tree, tmp_path):
    out = tmp_path / "calibrated"
    assert main(["train", str(tree), "--calibration", "sigmoid", "--out", str(out), "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["info"]["decision"]["calibration"] == "sigmoid"
    classifier = load_model(out / "model.joblib").named_steps["classifier"]
    assert classifier.calibration == "sigmoid" and classifier.calibrator_ is not None
    # predict_proba is the calibrated probability, and the decisions follow the threshold on it.
    _decided_by_threshold(_rows(out / "predictions.csv"), classifier.threshold_)
