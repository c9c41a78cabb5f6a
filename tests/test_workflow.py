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
    """The command line lists the protocols itself (it keeps sklearn out of ``--help``); they
    must stay those ``run_experiment`` accepts."""
    import argparse

    from skhybrid.cli import _build_parser
    from skhybrid.splits import PROTOCOLS

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("demo", "train"):
        split = next(a for a in commands.choices[name]._actions if a.dest == "split")
        assert tuple(split.choices) == PROTOCOLS
