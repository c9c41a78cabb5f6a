"""Stain augmentation in training: the classifiers' ``augment`` names ("dihedral", "stain").

What the network is trained on is observed directly: a forward pre-hook on the module records
every training batch, which is compared with the training tiles.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback
from torch import nn

from skhybrid.estimators import CNNClassifier, HybridCNNLSTMClassifier, _base
from skhybrid.estimators._base import AUGMENTATIONS, resolve_augment


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Two cores shared with other processes: one thread avoids OpenMP oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiles(n: int = 24, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stained-looking noisy tiles: purple (malignant) and pink (benign), distinct pixels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    colour = np.where(y[:, None] == 1, [[120, 70, 160]], [[225, 170, 200]])
    images = colour[:, None, None, :] + rng.normal(0, 25, (n, size, size, 3))
    return np.clip(images, 0, 255).astype(np.uint8), np.array(["benign", "malignant"])[y]


def tiny_backbone() -> nn.Module:
    # The same initial weights every call (the estimator copies a module backbone as is).
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())


def tiny_cnn(**params: Any) -> CNNClassifier:
    defaults = dict(
        backbone=tiny_backbone(),
        weights=None,
        freeze_epochs=0,
        max_epochs=2,
        batch_size=8,
        lr=1e-2,
        valid_size=None,
        random_state=0,
        verbose=0,
        device="cpu",
        precision="fp32",
    )
    return CNNClassifier(**{**defaults, **params})


class TrainingBatches(Callback):
    """The uint8 batches the module is trained on (not the validation or prediction passes)."""

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.batches_: list[np.ndarray] = []

        def record(module: nn.Module, args: tuple[Any, ...]) -> None:
            if module.training:
                self.batches_.append(args[0].detach().cpu().numpy().copy())

        self._hook = net.module_.register_forward_pre_hook(record)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        self._hook.remove()


def seen_tiles(augment: Any, X: np.ndarray, y: np.ndarray, **params: Any) -> np.ndarray:
    spy = TrainingBatches()
    tiny_cnn(augment=augment, callbacks=[("spy", spy)], **params).fit(X, y)
    return np.concatenate(spy.batches_)


def _state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.module_.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the value ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("augment", "expected"),
    [
        (False, ()),
        ([], ()),
        (True, ("dihedral",)),
        ("dihedral", ("dihedral",)),
        ("stain", ("stain",)),
        (["stain"], ("stain",)),
        (["stain", "dihedral"], ("dihedral", "stain")),
        (("dihedral", "stain", "stain"), ("dihedral", "stain")),
        (np.bool_(True), ("dihedral",)),
    ],
)
def test_augment_values_resolve_to_names_in_a_fixed_order(augment: Any, expected: tuple) -> None:
    assert resolve_augment(augment) == expected
    assert set(expected) <= set(AUGMENTATIONS)


@pytest.mark.parametrize("estimator_cls", [CNNClassifier, HybridCNNLSTMClassifier])
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"augment": "hue"}, "augment"),
        ({"augment": ["dihedral", "hue"]}, "augment"),
        ({"augment": 1}, "augment"),
        ({"augment": [True]}, "augment"),
        ({"stain_jitter": -0.1}, "stain_jitter"),
        ({"stain_jitter": 1.5}, "stain_jitter"),
        ({"stain_jitter": "strong"}, "stain_jitter"),
    ],
)
def test_unknown_augmentations_and_bad_ranges_raise(estimator_cls: Any, params: dict, name: str):
    X, y = tiles(8)
    clf = estimator_cls(weights=None, max_epochs=1, verbose=0, **params)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter") as info:
        clf.fit(X, y)
    if name == "augment":  # the message lists what is accepted
        assert "'dihedral'" in str(info.value) and "'stain'" in str(info.value)


def test_list_augment_is_a_plain_parameter_kept_by_clone_and_pickle() -> None:
    clf = tiny_cnn(augment=["dihedral", "stain"], stain_jitter=0.2)
    params = clone(clf).get_params()
    assert params["augment"] == ["dihedral", "stain"] and params["stain_jitter"] == 0.2
    X, y = tiles(16)
    clf.fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.augment == ["dihedral", "stain"] and restored.stain_jitter == 0.2
    assert np.array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_models_pickled_before_stain_jitter_existed_load_with_the_default() -> None:
    X, y = tiles(8)
    clf = tiny_cnn(max_epochs=1).fit(X, y)
    state = clf.__getstate__()
    del state["stain_jitter"]
    old = CNNClassifier.__new__(CNNClassifier)
    old.__setstate__(state)
    assert old.stain_jitter == 0.05 and old.get_params()["stain_jitter"] == 0.05


# -- what the network sees ----------------------------------------------------------------------
def test_without_augmentation_the_network_sees_the_training_tiles() -> None:
    X, y = tiles()
    seen = seen_tiles(False, X, y)
    assert len(seen) == 2 * len(X)  # two epochs, every tile once each
    originals = {tile.tobytes() for tile in X}
    assert all(tile.tobytes() in originals for tile in seen)


def _nearest(tile: np.ndarray, X: np.ndarray) -> tuple[int, float]:
    distance = np.abs(X.astype(float) - tile.astype(float)).mean(axis=(1, 2, 3))
    return int(distance.argmin()), float(distance.min())


def test_stain_augmentation_changes_the_colours_not_the_tissue() -> None:
    X, y = tiles()
    seen = seen_tiles("stain", X, y)
    assert len(seen) == 2 * len(X)
    originals = {tile.tobytes() for tile in X}
    unchanged = sum(tile.tobytes() in originals for tile in seen)
    assert unchanged == 0  # every tile jittered (zero draws have probability 0)
    for tile in seen:
        index, distance = _nearest(tile, X)
        # A few grey levels away from its own tile (the defaults change a pixel by ~3 %), and
        # the same pixels in the same places: far closer to it than to any other tile.
        assert 0 < distance < 15
        others = np.delete(np.arange(len(X)), index)
        assert distance < 0.5 * _nearest(tile, X[others])[1]
        # Not a rotation or flip: the colour change is pixel-wise in place.
        assert np.corrcoef(tile.reshape(-1).astype(float), X[index].reshape(-1))[0, 1] > 0.9


def test_stronger_stain_jitter_moves_colours_further() -> None:
    X, y = tiles()
    light = np.mean([_nearest(tile, X)[1] for tile in seen_tiles("stain", X, y)])
    strong = np.mean([_nearest(tile, X)[1] for tile in seen_tiles("stain", X, y, stain_jitter=0.2)])
    assert strong > 2 * light


def test_dihedral_augmentation_moves_pixels_without_changing_them() -> None:
    X, y = tiles()
    seen = seen_tiles("dihedral", X, y)
    originals = {tile.tobytes() for tile in X}
    sorted_originals = {np.sort(tile.reshape(-1, 3), axis=0).tobytes() for tile in X}
    assert any(tile.tobytes() not in originals for tile in seen)  # some were moved
    # ... but every tile holds exactly the pixels of a training tile.
    assert all(np.sort(t.reshape(-1, 3), axis=0).tobytes() in sorted_originals for t in seen)


def test_the_list_form_applies_both(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(name: str, function: Any) -> Any:
        def wrapper(images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            calls.append(name)
            return function(images, **kwargs)

        return wrapper

    monkeypatch.setattr(_base, "random_dihedral", spy("dihedral", _base.random_dihedral))
    monkeypatch.setattr(_base, "random_stain_jitter", spy("stain", _base.random_stain_jitter))
    X, y = tiles()
    n_batches = 2 * int(np.ceil(len(X) / 8))
    for augment, expected in [
        (["stain", "dihedral"], ["dihedral", "stain"]),
        ("stain", ["stain"]),
        (True, ["dihedral"]),
        (False, []),
    ]:
        calls.clear()
        seen = seen_tiles(augment, X, y)
        assert calls == expected * n_batches, augment
    # Both applied: the pixels changed (stain) and some tiles do not line up with their
    # original any more (dihedral), which the stain jitter alone never does.
    originals = {tile.tobytes() for tile in X}
    seen = seen_tiles(["dihedral", "stain"], X, y)
    assert not any(tile.tobytes() in originals for tile in seen)
    correlations = []
    for tile in seen:
        index, _ = _nearest(tile, X)
        correlations.append(np.corrcoef(tile.reshape(-1).astype(float), X[index].reshape(-1))[0, 1])
    assert min(correlations) < 0.5


# -- seeding, feature cache -----------------------------------------------------------------------
def test_stain_augmented_fit_is_repeatable_with_the_same_seed() -> None:
    X, y = tiles()
    first = tiny_cnn(augment="stain").fit(X, y)
    second = clone(first).fit(X, y)
    assert _same_state(_state(first), _state(second))
    assert np.array_equal(first.predict_proba(X), second.predict_proba(X))
    # Another seed, or no jitter from the same initial weights, trains another model.
    other_seed = tiny_cnn(augment="stain", random_state=1).fit(X, y)
    plain = tiny_cnn(augment=False).fit(X, y)
    assert not _same_state(_state(first), _state(other_seed))
    assert not _same_state(_state(first), _state(plain))
    # The order of the list does not matter, True is "dihedral".
    both = [tiny_cnn(augment=a).fit(X, y) for a in (["dihedral", "stain"], ["stain", "dihedral"])]
    assert _same_state(_state(both[0]), _state(both[1]))
    legacy = [tiny_cnn(augment=a).fit(X, y) for a in (True, "dihedral")]
    assert _same_state(_state(legacy[0]), _state(legacy[1]))


class BackboneTilesPerEpoch(Callback):
    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.per_epoch_: list[int] = []
        self._seen = [0]
        net.module_.backbone.register_forward_hook(lambda m, i, o: self._add(len(i[0])))

    def _add(self, n: int) -> None:
        self._seen[0] += n

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.per_epoch_.append(self._seen[0])
        self._seen[0] = 0


@pytest.mark.parametrize(
    ("augment", "second_epoch"),
    [(False, 0), ([], 0), ("stain", 24), (["dihedral", "stain"], 24)],
)
def test_feature_cache_is_off_with_any_augmentation(augment: Any, second_epoch: int) -> None:
    X, y = tiles()
    counter = BackboneTilesPerEpoch()
    tiny_cnn(
        augment=augment, freeze_epochs=2, callbacks=[("count", counter)], backbone="resnet18"
    ).fit(X, y)
    # Epoch 1 fills the cache (or trains); epoch 2 reuses it only without augmentation.
    assert counter.per_epoch_ == [len(X), second_epoch]
