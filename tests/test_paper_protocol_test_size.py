"""The paper's protocol tests on 20 % of the tiles by default; the patient protocol on 25 %."""

from __future__ import annotations

import inspect

import pytest
from torch import nn

from skhybrid import CNNClassifier, SubImageTiler, make_histology
from skhybrid.workflow import DEFAULT_TEST_SIZE, run_experiment


def _run(**kwargs):
    data = make_histology(n_images=40, image_size=(48, 72), random_state=3)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU())
    classifier = CNNClassifier(
        tiny, weights=None, max_epochs=1, freeze_epochs=0, valid_size=None, device="cpu",
        verbose=0, random_state=0,
    )  # fmt: skip
    return run_experiment(
        data.images,
        data.target,
        data.patient,
        classifier=classifier,
        tiler=SubImageTiler(grid=(3, 3), tile_size=(16, 16)),
        self_learning_rounds=0,
        verbose=0,
        **kwargs,
    )


def test_default_is_per_protocol() -> None:
    assert inspect.signature(run_experiment).parameters["test_size"].default is None
    assert DEFAULT_TEST_SIZE == {"patient": 0.25, "random-tile": 0.2}


def test_random_tile_tests_on_a_fifth_of_the_tiles() -> None:
    result = _run(protocol="random-tile")
    assert result.info["n_train"] + result.info["n_test"] == 40 * 9
    assert result.info["n_test"] == pytest.approx(0.2 * 40 * 9, abs=1)  # 72, not 90
    explicit = _run(protocol="random-tile", test_size=0.25)
    assert explicit.info["n_test"] == pytest.approx(0.25 * 40 * 9, abs=1)


def test_patient_protocol_keeps_its_quarter() -> None:
    default = _run(protocol="patient")
    explicit = _run(protocol="patient", test_size=0.25)
    assert default.info["n_test"] == explicit.info["n_test"]
    assert default.info["n_test"] != _run(protocol="patient", test_size=0.5).info["n_test"]
