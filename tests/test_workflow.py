"""The workflow building blocks that the command line and ``run_experiment`` are made of."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from torch import nn

from skhybrid import CNNClassifier, HybridCNNLSTMClassifier, SubImageTiler, make_histology
from skhybrid.metrics import patient_score
from skhybrid.workflow import make_classifier, make_relabeling_proposer, score_images


def test_make_classifier_builds_either_model_with_its_parameters():
    hybrid = make_classifier("hybrid", backbone="resnet18", lstm_hidden_size=64, max_epochs=3)
    assert isinstance(hybrid, HybridCNNLSTMClassifier)
    assert (hybrid.lstm_hidden_size, hybrid.max_epochs) == (64, 3)
    # the hybrid-only parameters are dropped for the CNN, the rest is kept
    cnn = make_classifier("cnn", backbone="resnet18", lstm_hidden_size=64, fusion="sum", lr=0.01)
    assert isinstance(cnn, CNNClassifier) and cnn.lr == 0.01
    assert "lstm_hidden_size" not in cnn.get_params()
    with pytest.raises(ValueError, match="model must be one of"):
        make_classifier("transformer")


def test_relabeling_proposer_learns_tile_classes_from_colour_and_texture():
    data = make_histology(n_images=40, image_size=(96, 144), random_state=0)
    tiles = SubImageTiler(grid=(3, 3), tile_size=(32, 32)).fit_transform(data.images)
    tiles = tiles.reshape(-1, 32, 32, 3)
    truth = data.tile_target.reshape(-1)
    half = len(tiles) // 2
    proposer = make_relabeling_proposer(random_state=0).fit(tiles[:half], truth[:half])
    assert [name for name, _ in proposer.steps] == ["features", "scale", "logistic"]
    # held-out tiles (other images): far better than the majority class
    accuracy = np.mean(proposer.predict(tiles[half:]) == truth[half:])
    majority = max(np.mean(truth[half:]), 1 - np.mean(truth[half:]))
    assert accuracy > majority + 0.1


def test_score_images_reports_agree_with_the_models_own_predictions():
    data = make_histology(n_images=24, image_size=(48, 72), random_state=1)
    y = np.where(data.target == 1, "malignant", "benign")
    tiny = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU())
    model = Pipeline(
        [
            ("tiles", SubImageTiler(grid=(3, 3), tile_size=(16, 16))),
            (
                "clf",
                CNNClassifier(
                    tiny, weights=None, max_epochs=2, freeze_epochs=0, valid_size=None,
                    device="cpu", verbose=0, random_state=0,
                ),
            ),
        ]
    )  # fmt: skip
    model.fit(data.images, y)
    tile_truth = np.where(data.tile_target == 1, "malignant", "benign")
    reports, rate, curves = score_images(model, data.images, y, data.patient, tile_truth=tile_truth)
    predicted = model.predict(data.images)
    image = reports["image"]
    assert image.n == len(y) and image.tp + image.fp + image.fn + image.tn == len(y)
    assert image.accuracy == pytest.approx(np.mean(predicted == y))
    assert image.tp == np.sum((predicted == "malignant") & (y == "malignant"))
    assert rate == pytest.approx(patient_score(y, predicted, data.patient))
    # the curves hold the positive class's probability of each image and of each tile
    truth, score = curves["image"]
    np.testing.assert_array_equal(truth, y)
    np.testing.assert_allclose(score, model.predict_proba(data.images)[:, 1])
    assert reports["tile"].n == tile_truth.size and curves["tile"][1].shape == (tile_truth.size,)
    # without patients or tile labels: no patient rate and an image report only
    reports, rate, _ = score_images(model, data.images, y)
    assert rate is None and set(reports) == {"image"}


def test_command_line_split_choices_are_the_workflow_protocols():
    """The command line's ``--split`` choices are the protocols ``run_experiment`` accepts."""
    import argparse

    from skhybrid.cli import _build_parser
    from skhybrid.splits import PROTOCOLS

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("demo", "train"):
        split = next(a for a in commands.choices[name]._actions if a.dest == "split")
        assert tuple(split.choices) == PROTOCOLS


def test_make_classifier_gives_each_class_only_the_parameters_it_has():
    from skhybrid.workflow import classifier_defaults

    hybrid_only = set(classifier_defaults("hybrid")) - set(classifier_defaults("cnn"))
    assert {"fusion", "lstm_hidden_size", "rnn_input"} <= hybrid_only
    hybrid = make_classifier(
        "hybrid", **{name: classifier_defaults()[name] for name in hybrid_only}
    )
    cnn = make_classifier("cnn", **{name: classifier_defaults()[name] for name in hybrid_only})
    assert hybrid_only <= set(hybrid.get_params()) and not hybrid_only & set(cnn.get_params())
    # skorch's routed parameters reach the estimator
    cnn = make_classifier("cnn", optimizer__weight_decay=0.5)
    assert cnn.get_params()["optimizer__weight_decay"] == 0.5


def _tiny_experiment(**kwargs):
    from skhybrid.workflow import run_experiment

    data = make_histology(n_images=24, image_size=(48, 72), random_state=2)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU())
    classifier = CNNClassifier(
        tiny, weights=None, max_epochs=1, freeze_epochs=0, valid_size=None, device="cpu",
        verbose=0, random_state=0,
    )  # fmt: skip
    return run_experiment(
        data.images,
        data.target,  # 0/1: named benign/malignant by the class-role rule
        data.patient,
        classifier=classifier,
        tiler=SubImageTiler(grid=(3, 3), tile_size=(16, 16)),
        tile_truth=data.tile_target,
        verbose=0,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("rounds", "aggregation", "expected"),
    [(1, None, "mil"), (0, None, "mean"), (1, "vote", "vote")],
)
def test_run_experiment_decides_the_aggregation_itself(rounds, aggregation, expected):
    result = _tiny_experiment(self_learning_rounds=rounds, aggregation=aggregation)
    assert result.model.steps[-1][1].aggregation == expected
    assert result.protocol == "patient" and set(result.reports) == {"image", "tile"}
    assert result.info["n_train"] + result.info["n_test"] == 24
    # the history (and its table) exist exactly when there was self-learning
    assert len(result.history) == (rounds + 1 if rounds else 0)
    assert bool(result.history_table) == bool(rounds)
    if rounds:
        assert result.history_table.startswith("| Round | benign | malignant |")
    assert set(result.tile_label_accuracy) == {"inherited", "corrected"}


def test_both_protocols_share_one_self_learning_step(tmp_path):
    patient = _tiny_experiment(self_learning_rounds=1)
    paper = _tiny_experiment(self_learning_rounds=1, protocol="random-tile")
    # the patient protocol relabels its training images only, the paper's all images
    total = lambda result: sum(result.history[0]["class_counts"].values())  # noqa: E731
    assert total(patient) == patient.info["n_train"] * 9
    assert total(paper) == 24 * 9
    assert set(paper.reports) == {"tile (corrected labels)", "tile"}
    assert paper.patient_score is None and paper.info["split_unit"] == "tile"
    assert paper.info["n_train"] + paper.info["n_test"] == 24 * 9
    # one writer: the same files for either protocol
    written = {p.name for p in paper.save(tmp_path / "paper", save_model=False)}
    assert {"report.json", "self_learning_history.md"} <= written
    assert (tmp_path / "paper" / "self_learning_history.md").read_text() == (
        paper.history_table + "\n"
    )


def test_labels_follow_the_class_role_rule():
    from skhybrid.exceptions import DataError
    from skhybrid.workflow import _as_named_labels

    y, truth = _as_named_labels([1, 2, 2], [[1, 2], [2, 2], [1, 1]])  # the larger is positive
    assert y.tolist() == ["benign", "malignant", "malignant"]
    assert truth.tolist() == [["benign", "malignant"], ["malignant"] * 2, ["benign"] * 2]
    # recognised names are kept as they are
    assert _as_named_labels(["normal", "tumor"])[0].tolist() == ["normal", "tumor"]
    with pytest.raises(DataError, match="at least two classes"):
        _as_named_labels(["benign", "benign"])
    # k classes: subtype names are kept; numeric subtype codes must be named first
    subtypes = ["adenosis", "ductal_carcinoma", "fibroadenoma"]
    assert _as_named_labels(subtypes)[0].tolist() == subtypes
    with pytest.raises(DataError, match="pass their names"):
        _as_named_labels([0, 4, 5])
    with pytest.raises(DataError):  # two names of unknown roles (a DataError is a ValueError)
        _as_named_labels(["cat", "dog"])


def test_workflow_errors_are_skhybrid_user_errors():
    from skhybrid.exceptions import SkhybridError, UserError
    from skhybrid.workflow import run_experiment

    with pytest.raises(UserError, match="protocol must be one of") as info:
        run_experiment([], [0, 1], [0, 1], classifier=None, protocol="leave-one-out")
    assert isinstance(info.value, (SkhybridError, ValueError))
    with pytest.raises(UserError, match="model must be one of"):
        make_classifier("transformer")
