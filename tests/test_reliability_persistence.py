"""Persistence: joblib round trips, GPU-trained models on a CPU-only machine, models shared
between the command line and Python, and interrupted training resumed without losing the
best epoch."""

from __future__ import annotations

import io
import json
import pickle
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from skorch.callbacks import Callback, Checkpoint, LoadInitState
from skorch.exceptions import DeviceWarning

sys.path.insert(0, str(Path(__file__).parent))
from _reliability import (
    feature_classifier,
    tiny_bags,
    tiny_cnn,
    tiny_extractor,
    tiny_histology,
    tiny_hybrid,
    tiny_relabeler,
)

from skhybrid import ColorTextureFeatures, SubImageTiler, load_model, save_model
from skhybrid.cli import main as cli_main


def _round_trip(model: Any, path: Path) -> Any:
    joblib.dump(model, path)
    return joblib.load(path)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tiny_bags(12)


@pytest.fixture(scope="module")
def fitted(data: Any) -> dict[str, Any]:
    """One fitted instance of every estimator and of the usual pipelines."""
    bags, y, _ = data
    images = tiny_histology(12)["images"]
    return {
        "CNNClassifier": (tiny_cnn(max_epochs=1).fit(bags, y), bags),
        "HybridCNNLSTMClassifier": (tiny_hybrid(max_epochs=1).fit(bags, y), bags),
        "CNNFeatureExtractor": (tiny_extractor().fit(bags), bags),
        "SelfLearningRelabeler": (tiny_relabeler(n_rounds=1).fit(bags, y), bags),
        "ColorTextureFeatures": (ColorTextureFeatures().fit(bags), bags),
        "SubImageTiler": (SubImageTiler(grid=(2, 2)).fit(images), images),
        "Pipeline(tiler, CNNClassifier)": (
            Pipeline([("tiles", SubImageTiler(grid=(2, 2))), ("clf", tiny_cnn(max_epochs=1))]).fit(
                images, y
            ),
            images,
        ),
        "Pipeline(extractor, logistic)": (
            make_pipeline(tiny_extractor(), LogisticRegression(max_iter=200)).fit(bags[:, 0], y),
            bags[:, 0],
        ),
    }


def _output(model: Any, X: np.ndarray) -> np.ndarray:
    """What a user reads from the model: probabilities, or the transformed data."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    return model.transform(X)


NAMES = [
    "CNNClassifier",
    "HybridCNNLSTMClassifier",
    "CNNFeatureExtractor",
    "SelfLearningRelabeler",
    "ColorTextureFeatures",
    "SubImageTiler",
    "Pipeline(tiler, CNNClassifier)",
    "Pipeline(extractor, logistic)",
]


@pytest.mark.parametrize("name", NAMES)
def test_fitted_round_trip_gives_identical_output(
    name: str, fitted: dict[str, Any], tmp_path: Path
) -> None:
    model, X = fitted[name]
    loaded = _round_trip(model, tmp_path / "model.joblib")
    assert type(loaded) is type(model)
    assert np.array_equal(_output(model, X), _output(loaded, X))
    if hasattr(model, "predict"):
        assert np.array_equal(model.predict(X), loaded.predict(X))
    # Loading twice from one file gives independent models (no shared tensors).
    again = joblib.load(tmp_path / "model.joblib")
    if hasattr(again, "module_"):
        first = next(iter(loaded.module_.parameters()))
        second = next(iter(again.module_.parameters()))
        assert first.data_ptr() != second.data_ptr()


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_cnn(max_epochs=1),
        lambda: tiny_hybrid(max_epochs=1),
        lambda: tiny_relabeler(n_rounds=1),
        lambda: Pipeline([("features", ColorTextureFeatures()), ("clf", LogisticRegression())]),
    ],
    ids=["cnn", "hybrid", "relabeler", "pipeline"],
)
def test_unfitted_round_trip_fits_like_the_original(make: Any, data: Any, tmp_path: Path) -> None:
    bags, y, _ = data
    X = bags if "Pipeline" not in type(make()).__name__ else bags[:, 0]
    original = make()
    loaded = _round_trip(original, tmp_path / "unfitted.joblib")
    # deep=False: the deep parameters list fresh default-callback objects on every call.
    assert repr(loaded.get_params(deep=False)) == repr(original.get_params(deep=False))
    assert np.array_equal(original.fit(X, y).predict_proba(X), loaded.fit(X, y).predict_proba(X))


def test_save_model_is_atomic_and_load_model_round_trips(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    model, images = fitted["Pipeline(tiler, CNNClassifier)"]
    path = save_model(model, tmp_path / "model.joblib")
    assert not list(tmp_path.glob("*.partial"))
    loaded = load_model(path, require_tiler=True)
    assert np.array_equal(model.predict_proba(images), loaded.predict_proba(images))


def test_save_model_without_optimizer_state(fitted: dict[str, Any], tmp_path: Path) -> None:
    """An inference file: a third of the size, same predictions, still fine-tunable; the model
    in memory keeps its optimizer state."""
    model, images = fitted["Pipeline(tiler, CNNClassifier)"]
    optimizer = model.steps[-1][1].optimizer_
    moments = {id(p): {k: v.clone() for k, v in st.items()} for p, st in optimizer.state.items()}
    assert moments  # Adam has state after a fit
    full = save_model(model, tmp_path / "full.joblib")
    slim = save_model(model, tmp_path / "slim.joblib", keep_optimizer_state=False)
    assert slim.stat().st_size < 0.5 * full.stat().st_size
    assert {id(p) for p in optimizer.state} == set(moments)  # restored after the dump
    loaded = load_model(slim, require_tiler=True)
    assert np.array_equal(loaded.predict_proba(images), model.predict_proba(images))
    clf = loaded.steps[-1][1]
    assert not clf.optimizer_.state
    clf.set_params(max_epochs=1).partial_fit(loaded.steps[0][1].transform(images), [0, 1] * 6)
    assert clf.optimizer_.state and len(clf.history_) == 2


# -- a model trained on a GPU, loaded on a CPU-only machine ------------------------------------
_PRETEND_CUDA = False


def _cuda_tag(obj: Any) -> str | None:
    """Serialise every storage with the location tag a CUDA tensor gets (only while asked)."""
    return "cuda:0" if _PRETEND_CUDA else None


def _never(obj: Any, location: str) -> None:
    return None


@contextmanager
def pretend_cuda_storages() -> Iterator[None]:
    """``torch.save`` inside the block writes storages tagged ``cuda:0``, exactly as it does
    on a GPU machine, so loading them needs a ``map_location`` on this CPU-only machine."""
    global _PRETEND_CUDA
    registry = torch.serialization._package_registry
    saved = list(registry)
    torch.serialization.register_package(-100, _cuda_tag, _never)
    _PRETEND_CUDA = True
    try:
        yield
    finally:
        _PRETEND_CUDA = False
        registry[:] = saved


def test_the_cuda_simulation_is_real() -> None:
    """Without a map_location, a storage saved under the simulation cannot load here."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    buffer = io.BytesIO()
    with pretend_cuda_storages():
        torch.save(torch.ones(3), buffer)
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(buffer, weights_only=True)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, map_location="cpu", weights_only=True), torch.ones(3))


@pytest.mark.parametrize("name", ["CNNClassifier", "HybridCNNLSTMClassifier"])
def test_gpu_trained_classifier_loads_on_cpu_with_a_warning(
    name: str, fitted: dict[str, Any], tmp_path: Path
) -> None:
    model, bags = fitted[name]
    expected = model.predict_proba(bags)
    gpu_model = pickle.loads(pickle.dumps(model))
    gpu_model.__dict__["device"] = "cuda"  # what get_params says after fit(device="cuda")
    gpu_model.device_ = "cuda"
    path = tmp_path / "gpu.joblib"
    with pretend_cuda_storages():
        save_model(Pipeline([("clf", gpu_model)]), path)
    with pytest.warns(DeviceWarning, match=r"requested device \(cuda\) is not available"):
        loaded = load_model(path).steps[-1][1]
    assert loaded.device_ == "cpu"
    assert all(p.device.type == "cpu" for p in loaded.module_.parameters())
    assert all(b.device.type == "cpu" for b in loaded.module_.buffers())
    state = loaded.optimizer_.state_dict()["state"]
    assert all(v.device.type == "cpu" for s in state.values() for v in s.values() if
               isinstance(v, torch.Tensor))  # fmt: skip
    np.testing.assert_allclose(loaded.predict_proba(bags), expected, rtol=0, atol=1e-6)


def test_auto_device_model_loads_quietly_on_cpu(fitted: dict[str, Any], tmp_path: Path) -> None:
    """device="auto" means "what this machine has": no warning, parameter kept."""
    model, bags = fitted["CNNClassifier"]
    auto = pickle.loads(pickle.dumps(model))
    auto.__dict__["device"] = "auto"
    with pretend_cuda_storages():
        joblib.dump(auto, tmp_path / "auto.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceWarning)
        loaded = joblib.load(tmp_path / "auto.joblib")
    assert loaded.get_params()["device"] == "auto" and loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.predict_proba(bags), model.predict_proba(bags), atol=1e-6)


def test_gpu_feature_extractor_loads_on_cpu(fitted: dict[str, Any], tmp_path: Path) -> None:
    model, bags = fitted["CNNFeatureExtractor"]
    gpu = pickle.loads(pickle.dumps(model))
    gpu.device, gpu.device_ = "cuda", "cuda"
    with pretend_cuda_storages():
        joblib.dump(gpu, tmp_path / "extractor.joblib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = joblib.load(tmp_path / "extractor.joblib")
    assert loaded.device_ == "cpu"
    np.testing.assert_allclose(loaded.transform(bags), model.transform(bags), atol=1e-6)


def test_gpu_feature_extractor_warns_when_falling_back(
    fitted: dict[str, Any], tmp_path: Path
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model, _ = fitted["CNNFeatureExtractor"]
    gpu = pickle.loads(pickle.dumps(model))
    gpu.device, gpu.device_ = "cuda", "cuda"
    joblib.dump(gpu, tmp_path / "extractor.joblib")
    with pytest.warns(UserWarning, match="'cuda', which is not available"):
        joblib.load(tmp_path / "extractor.joblib")


# -- command line <-> Python -------------------------------------------------------------------
def test_model_saved_in_python_predicts_from_the_cli(
    fitted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, images = fitted["Pipeline(tiler, CNNClassifier)"]
    path = save_model(model, tmp_path / "model.joblib")
    files = []
    for i, image in enumerate(images[:2]):
        from PIL import Image

        files.append(tmp_path / f"image{i}.png")
        Image.fromarray(image).save(files[-1])
    assert cli_main(["predict", str(path), *map(str, files), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    proba = model.predict_proba(images[:2])
    for entry, row in zip(results, proba):
        assert entry["probability"]["1"] == pytest.approx(row[1], abs=1e-4)
        assert np.array(entry["tile_probability_grid"]).shape == (2, 2)


@pytest.mark.slow
def test_model_saved_by_the_cli_loads_in_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "demo", "--out", str(tmp_path), "--weights", "none", "--n-images", "16", "--image-size", "48x48",
        "--tile-size", "16", "--backbone", "mobilenet_v3_small", "--epochs", "1",
        "--self-learning-rounds", "0", "--batch-size", "16", "-q",
    ]  # fmt: skip
    assert cli_main(argv) == 0
    model = load_model(tmp_path / "model.joblib", require_tiler=True)
    images = tiny_histology(4)["images"]
    proba = model.predict_proba(images)
    assert proba.shape == (4, 2) and np.allclose(proba.sum(axis=1), 1)


# -- interrupted training, resumed -----------------------------------------------------------
class _InterruptAfter(Callback):
    """Press Ctrl-C after ``epochs`` epochs of the whole history."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if len(net.history) == self.epochs:
            raise KeyboardInterrupt


def test_interrupted_fit_keeps_a_usable_model_and_resumes(data: Any) -> None:
    bags, y, _ = data
    model = tiny_cnn(max_epochs=4, callbacks=[("stop", _InterruptAfter(2))])
    model.fit(bags, y)  # skorch turns Ctrl-C into a clean end of training
    assert len(model.history_) == 2
    assert model.predict(bags).shape == (len(bags),)
    model.set_params(callbacks=[], max_epochs=1)
    model.partial_fit(bags, y)
    assert len(model.history_) == 3  # continued, not restarted


def test_warm_start_continues_training(data: Any) -> None:
    bags, y, _ = data
    # valid_size=None: no best-epoch restore, so the second epoch's update must show.
    model = tiny_cnn(max_epochs=1, warm_start=True, valid_size=None).fit(bags, y)
    weights = {k: v.clone() for k, v in model.module_.state_dict().items()}
    model.fit(bags, y)
    assert len(model.history_) == 2
    assert any(not torch.equal(weights[k], v) for k, v in model.module_.state_dict().items())


def test_resume_from_checkpoint_files(data: Any, tmp_path: Path) -> None:
    """skorch's documented pattern: Checkpoint + LoadInitState on a fresh estimator."""
    bags, y, _ = data
    checkpoint = Checkpoint(dirname=str(tmp_path / "ckpt"), monitor=None)
    first = tiny_cnn(max_epochs=2, callbacks=[("ckpt", checkpoint)]).fit(bags, y)
    assert (tmp_path / "ckpt" / "params.pt").is_file()
    resumed = tiny_cnn(
        max_epochs=1,
        callbacks=[
            ("ckpt", Checkpoint(dirname=str(tmp_path / "ckpt"), monitor=None)),
            ("load", LoadInitState(Checkpoint(dirname=str(tmp_path / "ckpt"), monitor=None))),
        ],
    ).fit(bags, y)
    assert len(resumed.history_) == len(first.history_) + 1


def test_resume_keeps_the_best_epoch(data: Any) -> None:
    bags, y, _ = data
    model = tiny_cnn(max_epochs=2).fit(bags, y)
    best_before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    # A learning rate that wrecks the model: the resumed epoch is far worse than any before.
    model.set_params(lr=5.0, max_epochs=1)
    model.partial_fit(bags, y)
    losses = model.history_[:, "valid_loss"]
    assert losses[-1] > min(losses[:-1])  # the premise of the test
    after = model.module_.state_dict()
    assert all(torch.equal(best_before[k], after[k]) for k in best_before)


def test_feature_classifier_round_trip(data: Any, tmp_path: Path) -> None:
    """The relabeler's default tile model pickles too (it travels inside saved models)."""
    bags, y, _ = data
    tiles = bags.reshape(-1, *bags.shape[2:])
    tile_y = np.repeat(y, bags.shape[1])
    model = feature_classifier().fit(tiles, tile_y)
    loaded = _round_trip(model, tmp_path / "features.joblib")
    assert np.array_equal(model.predict_proba(tiles), loaded.predict_proba(tiles))
    assert repr(clone(loaded).get_params()) == repr(clone(model).get_params())
