"""Tests of the evaluation protocols, model persistence and the tile overlay."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from skhybrid.model_io import load_model, save_model
from skhybrid.overlay import render_tile_overlay, save_tile_overlay
from skhybrid.splits import patient_split_indices, random_tile_split_indices
from skhybrid.tiling import SubImageTiler


def _patients(n_patients: int = 12, per_patient: int = 5):
    patients = np.repeat([f"P{i:02d}" for i in range(n_patients)], per_patient)
    y = np.repeat(np.arange(n_patients) % 2, per_patient)  # one class per patient, as in BreakHis
    return y, patients


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_patient_split_keeps_patients_on_one_side_and_both_classes(seed):
    y, patients = _patients()
    train, test = patient_split_indices(y, patients, test_size=0.25, random_state=seed)
    assert set(patients[train]).isdisjoint(patients[test])
    assert len(train) + len(test) == len(y)
    assert set(y[test]) == {0, 1} and set(y[train]) == {0, 1}
    assert 0.15 <= len(test) / len(y) <= 0.4


@pytest.mark.parametrize("seed", range(10))
def test_patient_split_stratifies_over_patients_not_images(seed):
    # 3 benign and 2 malignant patients with very unequal image counts (the small demo's
    # shape): each class sends one patient to each side, whatever the image counts.
    patients = np.repeat(["B0", "B1", "B2", "M0", "M1"], [2, 9, 4, 12, 3])
    y = np.array([p[0] for p in patients])
    train, test = patient_split_indices(y, patients, test_size=0.25, random_state=seed)
    assert set(patients[train]).isdisjoint(patients[test])
    assert set(y[train]) == set(y[test]) == {"B", "M"}
    assert len({p for p in patients[test] if p[0] == "M"}) == 1


def test_patient_split_is_reproducible_and_seed_dependent():
    y, patients = _patients(20)
    first = patient_split_indices(y, patients, random_state=3)
    again = patient_split_indices(y, patients, random_state=3)
    other = patient_split_indices(y, patients, random_state=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_patient_split_errors():
    y, patients = _patients()
    with pytest.raises(ValueError, match="at least 2 patients"):
        patient_split_indices(y, np.zeros(len(y)))
    with pytest.raises(ValueError, match="test_size"):
        patient_split_indices(y, patients, test_size=0.9)
    with pytest.raises(ValueError, match="entries"):
        patient_split_indices(y[:-1], patients)


def test_random_tile_split_leaks_images_across_sides():
    train, test = random_tile_split_indices(40, 9, test_size=0.25, random_state=0)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == 360
    images_train, images_test = set(train // 9), set(test // 9)
    # The documented flaw of the paper's protocol: most test images also have training tiles.
    assert len(images_train & images_test) > 20


# -- persistence --------------------------------------------------------------------------------
def _fitted_pipeline():
    images = np.random.default_rng(0).integers(0, 256, (4, 30, 30, 3), dtype=np.uint8)
    tiler = SubImageTiler().fit(images)
    classifier = DummyClassifier(strategy="most_frequent").fit(np.zeros((4, 1)), [0, 1, 1, 1])
    return Pipeline([("tiles", tiler), ("clf", classifier)])


def test_save_and_load_round_trip(tmp_path):
    model = _fitted_pipeline()
    path = save_model(model, tmp_path / "model.joblib")
    loaded = load_model(path, require_tiler=True)
    assert loaded.steps[0][1].tile_shape_ == (10, 10)
    assert not (tmp_path / "model.joblib.partial").exists()


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.joblib"):
        load_model(tmp_path / "missing.joblib")
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not a skhybrid model"):
        load_model(garbage)
    joblib.dump({"weights": [1, 2]}, tmp_path / "dict.joblib")
    with pytest.raises(ValueError, match="not a fitted scikit-learn estimator"):
        load_model(tmp_path / "dict.joblib")
    joblib.dump(DummyClassifier(), tmp_path / "bare.joblib")
    with pytest.raises(ValueError, match="SubImageTiler"):
        load_model(tmp_path / "bare.joblib", require_tiler=True)


def test_save_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_model(_fitted_pipeline(), tmp_path / "no" / "model.joblib")
    with pytest.raises(TypeError, match="fitted estimators"):
        save_model({"a": 1}, tmp_path / "model.joblib")


# -- overlay ------------------------------------------------------------------------------------
def test_overlay_tints_tiles_by_score(tmp_path):
    image = np.full((120, 180, 3), 128, np.uint8)  # tiles of 40x60
    scores = np.zeros((3, 3))
    scores[1, 2] = 1.0
    overlay = render_tile_overlay(image, scores)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    hot = overlay[60:75, 150:175].astype(int)  # inside tile (1, 2), away from lines and text
    cold = overlay[100:115, 30:55].astype(int)  # tile (2, 0)
    assert hot[..., 0].min() > 128 + 30
    assert hot[..., 1].max() < 128 - 20
    np.testing.assert_array_equal(cold, 128)  # untouched at score 0
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    written = save_tile_overlay(path, scores, tmp_path / "overlay.png")
    np.testing.assert_array_equal(np.asarray(Image.open(written)), overlay)
