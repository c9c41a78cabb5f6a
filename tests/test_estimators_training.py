"""Training behaviour of the skorch estimators: learning, two phases, best epoch, seeds, splits.

Models are tiny (resnet18 / mobilenet_v3_small from scratch on 32x32 tiles, a few epochs) so
the module runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from skhybrid.datasets import make_histology
from skhybrid.estimators import CNNClassifier, HybridCNNLSTMClassifier, aggregate_proba
from skhybrid.estimators._data import group_train_valid_split
from skhybrid.tiling import SubImageTiler

SMALL = {"weights": None, "lstm_hidden_size": 16, "batch_size": 16, "verbose": 0}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Two cores shared with other processes: one thread avoids OpenMP oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def easy_tiles(n: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Dark-purple (malignant) vs pale-pink (benign) noisy tiles: trivially separable."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    colour = np.where(y[:, None] == 1, [[110, 60, 150]], [[235, 180, 205]])
    tiles = colour[:, None, None, :] + rng.normal(0, 30, (n, size, size, 3))
    return np.clip(tiles, 0, 255).astype(np.uint8), np.array(["benign", "malignant"])[y]


class Snapshots(Callback):
    """Copies of the module's state dict at the start and after every epoch."""

    def on_train_begin(self, net, **kwargs):
        self.states_ = [self._copy(net)]

    def on_epoch_end(self, net, **kwargs):
        self.states_.append(self._copy(net))

    @staticmethod
    def _copy(net):
        return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


# -- learning on images through a Pipeline ------------------------------------------------------
@pytest.fixture(scope="module")
def histology():
    return make_histology(
        n_images=40, image_size=(96, 144), n_patients=8, difficulty=0.0, random_state=0
    )


@pytest.fixture(scope="module")
def fitted_pipeline(histology):
    train = np.arange(len(histology.images)) % 4 != 0
    pipe = Pipeline(
        [
            ("tiles", SubImageTiler(tile_size=(32, 32))),
            (
                "clf",
                HybridCNNLSTMClassifier(
                    "resnet18", max_epochs=6, freeze_epochs=1, lr=1e-3, random_state=0, **SMALL
                ),
            ),
        ]
    )
    pipe.fit(histology.images[train], histology.target[train])
    return pipe, ~train


def test_pipeline_learns_image_labels(fitted_pipeline, histology):
    pipe, test = fitted_pipeline
    predicted = pipe.predict(histology.images[test])
    assert set(predicted) <= set(histology.target)
    accuracy = np.mean(predicted == histology.target[test])
    assert accuracy >= 0.8  # chance is 0.5
    history = pipe.named_steps["clf"].history_
    losses = history[:, "train_loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_bag_probabilities_aggregate_tile_probabilities(fitted_pipeline, histology):
    pipe, test = fitted_pipeline
    clf = pipe.named_steps["clf"]
    bags = pipe.named_steps["tiles"].transform(histology.images[test])
    tile_proba = clf.predict_proba_tiles(bags)
    assert tile_proba.shape == (len(bags), 9, 2)
    for aggregation in ("mean", "max", "vote"):
        clf.set_params(aggregation=aggregation)
        proba = clf.predict_proba(bags)
        np.testing.assert_allclose(proba, aggregate_proba(tile_proba, aggregation))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    clf.set_params(aggregation="mean")
    # Single tiles (4-D input) get one row each.
    assert clf.predict_proba(bags[:, 0]).shape == (len(bags), 2)


def test_bf16_predictions_agree_with_fp32(fitted_pipeline, histology):
    pipe, test = fitted_pipeline
    clf = pipe.named_steps["clf"]
    bags = pipe.named_steps["tiles"].transform(histology.images[test])
    default = clf.precision
    try:
        fp32 = clf.set_params(precision="fp32").predict_proba(bags)
        bf16 = clf.set_params(precision="bf16").predict_proba(bags)
    finally:
        clf.set_params(precision=default)
    assert not np.array_equal(bf16, fp32)  # the two paths really differ
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    assert np.mean(bf16.argmax(1) == fp32.argmax(1)) >= 0.9


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(monkeypatch, fast_bf16):
    from skhybrid.estimators import _runtime

    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: fast_bf16)
    expected = "bf16" if fast_bf16 else "fp32"
    assert _runtime.resolve_precision("auto", "cpu") == expected
    assert _runtime.resolve_precision("fp32", "cpu") == "fp32"  # explicit values win
    assert _runtime.resolve_precision("bf16", "cpu") == "bf16"
    X, y = easy_tiles(16, seed=5)
    params = {k: v for k, v in SMALL.items() if k != "lstm_hidden_size"}
    clf = CNNClassifier("resnet18", max_epochs=1, freeze_epochs=0, valid_size=None, **params)
    assert clf.fit(X, y).precision_ == expected
    assert clf.get_params()["precision"] == "auto"
    # The autocast context really switches: bf16 matmuls give bf16 results inside it.
    with _runtime.autocast("cpu", "auto"):
        dtype = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    assert dtype == (torch.bfloat16 if fast_bf16 else torch.float32)


def test_cpu_bf16_environment_override(monkeypatch):
    from skhybrid.estimators import _runtime

    monkeypatch.setenv("SKHYBRID_CPU_BF16", "0")
    assert _runtime.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("SKHYBRID_CPU_BF16", "1")
    assert _runtime.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setenv("SKHYBRID_CPU_BF16", "auto")  # what the CPU says
    expected = "bf16" if _runtime._cpu_flags_have_bf16() else "fp32"
    assert _runtime.resolve_precision("auto", "cpu") == expected


def test_default_precision_on_this_cpu_learns_like_fp32(monkeypatch):
    """The real default (no override): training is as good as in fp32. Trajectories are not
    compared: from scratch on a few tiles, rounding differences grow like a change of seed."""
    monkeypatch.delenv("SKHYBRID_CPU_BF16", raising=False)
    X, y = easy_tiles(64, seed=6)
    X_test, y_test = easy_tiles(64, seed=7)
    params = {k: v for k, v in SMALL.items() if k != "lstm_hidden_size"}
    accuracy = {}
    for precision in ("auto", "fp32"):
        clf = CNNClassifier(
            "resnet18", max_epochs=4, freeze_epochs=0, lr=1e-3, random_state=0,
            precision=precision, **params,
        ).fit(X, y)  # fmt: skip
        losses = clf.history_[:, "train_loss"]
        assert losses[-1] < losses[0], (precision, losses)
        accuracy[precision] = np.mean(clf.predict(X_test) == y_test)
    assert accuracy["auto"] >= 0.9 and accuracy["fp32"] >= 0.9, accuracy


def test_auto_precision_on_cuda_follows_bf16_support(monkeypatch):
    from skhybrid.estimators import _runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert _runtime.resolve_precision("auto", "cuda") == expected


def test_aggregation_definitions():
    tile_proba = np.array([[[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]]])
    np.testing.assert_allclose(aggregate_proba(tile_proba, "mean"), [[1.6 / 3, 1.4 / 3]])
    np.testing.assert_allclose(aggregate_proba(tile_proba, "max"), [[0.9 / 1.6, 0.7 / 1.6]])
    np.testing.assert_allclose(aggregate_proba(tile_proba, "vote"), [[1 / 3, 2 / 3]])
    # Multiple-instance rule: positive as soon as one tile is (min of the negative column).
    np.testing.assert_allclose(aggregate_proba(tile_proba, "mil"), [[0.3, 0.7]])
    mostly_benign = np.array([[[0.95, 0.05]] * 8 + [[0.1, 0.9]]])
    assert aggregate_proba(mostly_benign, "mean")[0, 1] < 0.5  # the mean misses the lesion
    assert aggregate_proba(mostly_benign, "mil")[0, 1] == pytest.approx(0.9)
    three = np.array([[[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.5, 0.1, 0.4]]])
    np.testing.assert_allclose(aggregate_proba(three, "mil"), [[0.2, 0.8 * 0.6, 0.8 * 0.4]])
    with pytest.raises(ValueError, match="valid are"):
        aggregate_proba(tile_proba, "median")


# -- two-phase training -------------------------------------------------------------------------
def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


@pytest.mark.parametrize("estimator_cls", [HybridCNNLSTMClassifier, CNNClassifier])
def test_cnn_is_frozen_in_phase_one_and_fine_tuned_after(estimator_cls):
    X, y = easy_tiles(48, seed=1)
    params = {k: v for k, v in SMALL.items() if k != "lstm_hidden_size"}
    if estimator_cls is HybridCNNLSTMClassifier:
        params["lstm_hidden_size"] = 16
    snapshots = Snapshots()
    clf = estimator_cls(
        "resnet18", max_epochs=3, freeze_epochs=2, lr=1e-3, valid_size=None,
        callbacks=[("snapshots", snapshots)], random_state=0, **params,
    )  # fmt: skip
    clf.fit(X, y)
    states = snapshots.states_
    assert list(clf.history_[:, "backbone_frozen"]) == [True, True, False]
    running_stats = [k for k in states[0] if k.startswith("backbone.") and "running_" in k]
    assert running_stats
    for epoch in (1, 2):  # phase 1: CNN weights and BatchNorm statistics untouched
        assert not _changed(states[0], states[epoch], "backbone.")
        assert _changed(states[epoch - 1], states[epoch], "fc.")
    if estimator_cls is HybridCNNLSTMClassifier:
        assert _changed(states[0], states[1], "lstm.")
        assert _changed(states[0], states[1], "fusion.")
    # phase 2: everything is fine-tuned, running statistics included
    assert _changed(states[2], states[3], "backbone.")
    assert any(not torch.equal(states[2][k], states[3][k]) for k in running_stats)
    # the fitted module is left trainable
    assert all(p.requires_grad for p in clf.module_.parameters())


class CountBackboneTiles(Callback):
    """Tiles the backbone forwarded in each epoch (cache filling included)."""

    def on_train_begin(self, net, **kwargs):
        self.per_epoch_ = []
        self._seen = [0]
        net.module_.backbone.register_forward_hook(lambda m, i, o: self._add(len(i[0])))

    def _add(self, n):
        self._seen[0] += n

    def on_epoch_end(self, net, **kwargs):
        self.per_epoch_.append(self._seen[0])
        self._seen[0] = 0


@pytest.mark.parametrize("estimator_cls", [HybridCNNLSTMClassifier, CNNClassifier])
def test_phase_one_feature_cache_is_exact_and_skips_the_backbone(estimator_cls):
    X, y = easy_tiles(48, seed=3)
    params = (
        {**SMALL, "lstm_hidden_size": 8}
        if estimator_cls is HybridCNNLSTMClassifier
        else {k: v for k, v in SMALL.items() if k != "lstm_hidden_size"}
    )
    fits = {}
    for cache in (True, False):
        counter = CountBackboneTiles()
        clf = estimator_cls(
            "resnet18", max_epochs=4, freeze_epochs=2, lr=1e-3, random_state=0,
            cache_features=cache, callbacks=[("count", counter)], **params,
        )  # fmt: skip
        fits[cache] = (clf.fit(X, y), counter.per_epoch_)
    cached, plain = fits[True][0], fits[False][0]
    # Same training, to float rounding: the frozen CNN gives the same features every epoch.
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(cached.history_[:, key], plain.history_[:, key], atol=1e-6)
    np.testing.assert_allclose(cached.predict_proba(X), plain.predict_proba(X), atol=1e-6)
    # Without the cache the backbone sees every tile every epoch (train + validation); with
    # it, all tiles once at the start of phase 1, then not again until it is unfrozen.
    assert fits[False][1] == [len(X)] * 4
    assert fits[True][1] == [len(X), 0, len(X), len(X)]
    # The FeatureCache callback owns the cache and lets go of it (and of the tiles) after fit.
    cache = dict(cached.callbacks_)["feature_cache"]
    assert cache.tiles_ is None and cache.features_ is None


def test_feature_cache_is_off_with_augmentation():
    X, y = easy_tiles(32, seed=4)
    counter = CountBackboneTiles()
    clf = CNNClassifier(
        "resnet18", max_epochs=2, freeze_epochs=2, lr=1e-3, random_state=0, augment=True,
        callbacks=[("count", counter)], **{k: v for k, v in SMALL.items() if k != "lstm_hidden_size"},
    )  # fmt: skip
    clf.fit(X, y)
    assert counter.per_epoch_ == [len(X)] * 2  # new views every epoch: nothing to reuse


def test_feature_cache_with_a_skorch_train_split_is_exact():
    # train_split=ValidSplit(...) instead of "auto": skorch's split of the indexed dataset.
    X, y = easy_tiles(32, seed=5)
    histories = {}
    for cache in (True, False):
        clf = CNNClassifier(
            "resnet18", max_epochs=2, freeze_epochs=2, lr=1e-3, random_state=0,
            train_split=ValidSplit(4, stratified=True), cache_features=cache,
            **{k: v for k, v in SMALL.items() if k != "lstm_hidden_size"},
        )  # fmt: skip
        histories[cache] = clf.fit(X, y).history_[:, "valid_loss"]
    np.testing.assert_allclose(histories[True], histories[False], atol=1e-6)


def test_mil_aggregation_takes_the_negative_class_from_class_roles():
    # classes_ = ["malignant", "normal"]: the negative class is the second column, not the first.
    tiles, tile_y = easy_tiles(32, seed=6)
    order = np.argsort(tile_y, kind="stable")  # 4 benign-looking images, then 4 malignant
    bags = tiles[order].reshape(8, 4, 32, 32, 3)
    y = np.where(tile_y[order].reshape(8, 4)[:, 0] == "benign", "normal", "malignant")
    clf = CNNClassifier(
        "resnet18", max_epochs=1, freeze_epochs=0, valid_size=None, random_state=0,
        aggregation="mil", **{k: v for k, v in SMALL.items() if k != "lstm_hidden_size"},
    )  # fmt: skip
    clf.fit(bags, y)
    assert clf.classes_.tolist() == ["malignant", "normal"] and clf.negative_class is None
    tile_proba = clf.predict_proba_tiles(bags)
    proba = clf.predict_proba(bags)
    # P(normal) is the smallest normal probability of any tile: one malignant tile is enough.
    np.testing.assert_allclose(proba[:, 1], tile_proba[:, :, 1].min(axis=1))
    np.testing.assert_allclose(proba, aggregate_proba(tile_proba, "mil", negative_index=1))
    assert not np.allclose(proba, aggregate_proba(tile_proba, "mil", negative_index=0))
    # An explicit negative_class overrides the inference (set after fit: no refit needed).
    clf.set_params(negative_class="malignant")
    np.testing.assert_allclose(clf.predict_proba(bags)[:, 0], tile_proba[:, :, 0].min(axis=1))
    with pytest.raises(ValueError, match="negative_class"):
        clf.set_params(negative_class="benign").predict_proba(bags)


class SpoilLastEpoch(Callback):
    """Make the last epoch diverge, so the best validation loss is an earlier epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.epoch:
            for group in net.optimizer_.param_groups:
                group["lr"] = 50.0


def test_weights_of_the_best_validation_epoch_are_restored():
    X, y = easy_tiles(64, seed=2)
    snapshots = Snapshots()
    clf = HybridCNNLSTMClassifier(
        "resnet18", max_epochs=3, freeze_epochs=0, lr=1e-3, random_state=0,
        callbacks=[("snapshots", snapshots), ("spoil", SpoilLastEpoch(3))], **SMALL,
    )  # fmt: skip
    clf.fit(X, y)
    valid_loss = clf.history_[:, "valid_loss"]
    best = int(np.argmin(valid_loss))
    assert best < 2  # the spoiled last epoch is not the best one
    final = clf.module_.state_dict()
    assert all(torch.equal(final[k], snapshots.states_[best + 1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots.states_[3][k]) for k in final)


def test_learning_rate_decays_per_epoch_and_patience_stops_early():
    X, y = easy_tiles(32, seed=3)
    clf = CNNClassifier(
        "mobilenet_v3_small", weights=None, max_epochs=3, freeze_epochs=0, lr=1e-3,
        lr_decay=0.5, batch_size=16, verbose=0, random_state=0,
    )  # fmt: skip
    clf.fit(X, y)
    np.testing.assert_allclose(clf.history_[:, "event_lr"], [1e-3, 5e-4, 2.5e-4])
    spoiled = CNNClassifier(
        "mobilenet_v3_small", weights=None, max_epochs=6, freeze_epochs=0, patience=1,
        batch_size=16, verbose=0, random_state=0, callbacks=[("spoil", SpoilLastEpoch(2))],
    )  # fmt: skip
    spoiled.fit(X, y)
    assert len(spoiled.history_) < 6


# -- seeds, labels, splits ----------------------------------------------------------------------
def test_random_state_makes_cpu_fits_repeatable_without_touching_global_rng():
    X, y = easy_tiles(40, seed=4)
    params = dict(max_epochs=2, freeze_epochs=1, augment=True, **SMALL)
    rng_before = torch.get_rng_state()
    first = HybridCNNLSTMClassifier("resnet18", random_state=7, **params).fit(X, y)
    second = HybridCNNLSTMClassifier("resnet18", random_state=7, **params).fit(X, y)
    other = HybridCNNLSTMClassifier("resnet18", random_state=8, **params).fit(X, y)
    assert torch.equal(torch.get_rng_state(), rng_before)
    a, b, c = (m.module_.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_labels_come_back_as_given():
    X, y = easy_tiles(24, seed=5)
    codes = np.where(y == "malignant", 7, 3)
    clf = CNNClassifier("mobilenet_v3_small", max_epochs=1, freeze_epochs=0, **{
        k: v for k, v in SMALL.items() if k != "lstm_hidden_size"
    })  # fmt: skip
    clf.fit(X, codes)
    np.testing.assert_array_equal(clf.classes_, [3, 7])
    assert set(clf.predict(X)) <= {3, 7}
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["benign", "malignant"])
    assert clf.predict(X).dtype.kind == "U"
    with pytest.raises(ValueError, match="at least 2 classes"):
        clf.fit(X, np.full(len(X), "benign"))


class RecordSplit(Callback):
    def on_train_begin(self, net, **kwargs):
        self.indices_ = None

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.indices_ = (np.asarray(dataset_train.indices), np.asarray(dataset_valid.indices))


def test_internal_validation_never_splits_the_tiles_of_an_image():
    X, y = easy_tiles(12 * 4, seed=6)
    order = np.argsort(y, kind="stable")  # 6 benign bags, then 6 malignant ones
    bags = X[order].reshape(12, 4, 32, 32, 3)
    image_y = y[order].reshape(12, 4)[:, 0]
    recorder = RecordSplit()
    clf = CNNClassifier(
        "mobilenet_v3_small", weights=None, max_epochs=1, freeze_epochs=0, batch_size=16,
        verbose=0, random_state=0, callbacks=[("split", recorder)],
    )  # fmt: skip
    clf.fit(bags, image_y)
    train, valid = recorder.indices_
    assert len(valid) and len(train) + len(valid) == 48
    assert not set(train // 4) & set(valid // 4)  # tile index // T = image index
    # with per-image groups (patients), whole patients go to one side
    patients = np.repeat(np.arange(6), 2)
    clf.fit(bags, image_y, groups=patients)
    train, valid = recorder.indices_
    assert not set(patients[train // 4]) & set(patients[valid // 4])


def test_group_split_is_stratified_and_disjoint_and_falls_back_with_few_groups():
    y = np.repeat([0, 1], 50)
    groups = np.arange(100) // 5
    train, valid = group_train_valid_split(y, groups, 0.2, random_state=0)
    assert not set(groups[train]) & set(groups[valid])
    assert 0.1 <= len(valid) / 100 <= 0.3
    assert set(y[valid]) == {0, 1}
    train, valid = group_train_valid_split(y[:6], np.array([0, 0, 0, 1, 1, 1]), 0.2, 0)
    assert len(train) == len(valid) == 3
    with pytest.raises(ValueError, match="at least 2 groups"):
        group_train_valid_split(y[:4], np.zeros(4), 0.2, 0)
