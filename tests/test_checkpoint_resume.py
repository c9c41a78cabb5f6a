"""Per-epoch checkpoints and resume: an interrupted fit continues to the same model.

The scenario of every resume test: 6 epochs, the CNN frozen for the first 2 (the phase change
happens after the interruption point's epoch 2), a halving learning rate, and a validation
split whose best epoch comes before the interruption (so the resumed fit must restore weights
it only knows from the checkpoint).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from _reliability import tiny_bags, tiny_cnn, tiny_hybrid, tiny_relabeler

from skhybrid.estimators import (
    TrainingCheckpoint,
    load_checkpoint,
    load_self_learning_state,
    resume_fit,
    save_self_learning_state,
)
from skhybrid.estimators._checkpoint import CHECKPOINT_FILE, _atomic_write

SCENARIO: dict[str, Any] = {
    "max_epochs": 6,
    "freeze_epochs": 2,
    "lr_decay": 0.5,
    "valid_size": 0.25,
    "precision": "fp32",
}


class WeightLog(Callback):
    """The module's weights at the end of every epoch, by epoch (not pickled with the net)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        state = net.module_.state_dict()
        self.weights[len(net.history)] = {k: v.detach().clone() for k, v in state.items()}

    def __getstate__(self) -> dict[str, Any]:
        return {"weights": {}}


class Crash(Callback):
    """A killed job, as far as the Python side sees it: an exception after epoch ``epoch``."""

    def __init__(self, epoch: int = 3) -> None:
        self.epoch = epoch

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if len(net.history) == self.epoch:
            raise RuntimeError("killed")


#: Armed by a test, disarmed by the first interrupt (the callback travels in the checkpoint).
_CTRL_C = {"armed": False}


class CtrlC(Callback):
    """Ctrl-C in the middle of epoch ``epoch``'s training batches."""

    def __init__(self, epoch: int = 3) -> None:
        self.epoch = epoch

    def on_batch_end(self, net: Any, training: bool = False, **kwargs: Any) -> None:
        if training and _CTRL_C["armed"] and len(net.history) == self.epoch:
            _CTRL_C["armed"] = False
            raise KeyboardInterrupt


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _trajectory(model: Any) -> list[tuple[Any, ...]]:
    keys = ("epoch", "train_loss", "valid_loss", "backbone_frozen", "event_lr")
    return [tuple(row[key] for key in keys) for row in model.history_]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tiny_bags(12)


@pytest.fixture(scope="module")
def straight(data: Any, tmp_path_factory: Any) -> tuple[Any, WeightLog]:
    """The uninterrupted run the resumed ones must reproduce."""
    bags, y, groups = data
    log = WeightLog()
    folder = tmp_path_factory.mktemp("straight")
    callbacks = [("checkpoint", TrainingCheckpoint(folder)), ("log", log)]
    model = tiny_cnn(**SCENARIO, callbacks=callbacks).fit(bags, y, groups=groups)
    # The premises: the phase change and a best epoch before the interruption points.
    assert [row["backbone_frozen"] for row in model.history_] == [True] * 2 + [False] * 4
    assert model.history_[-1]["best_epoch_restored"] < 3
    return model, log


def test_resumed_fit_ends_on_the_same_weights(data: Any, straight: Any, tmp_path: Path) -> None:
    bags, y, groups = data
    model, log = straight
    callbacks = [
        ("checkpoint", TrainingCheckpoint(tmp_path)),
        ("log", WeightLog()),  # travels in the checkpoint, empty, and logs the resumed epochs
        ("crash", Crash(3)),
    ]
    with pytest.raises(RuntimeError, match="killed"):
        tiny_cnn(**SCENARIO, callbacks=callbacks).fit(bags, y, groups=groups)
    checkpoint = load_checkpoint(tmp_path)
    assert (checkpoint["epoch"], checkpoint["end_epoch"], checkpoint["finished"]) == (3, 6, False)
    assert _same_weights(checkpoint["net"].module_.state_dict(), log.weights[3])

    resumed = resume_fit(tmp_path, bags, y, groups=groups)
    # Same epochs, losses, phases and learning rates: shuffling and dropout continued the
    # RNG stream, and the schedule its position.
    assert _trajectory(resumed) == _trajectory(model)
    # Every resumed epoch ends on exactly the weights of the uninterrupted run.
    resumed_weights = dict(resumed.callbacks_)["log"].weights
    assert sorted(resumed_weights) == [4, 5, 6]
    assert all(_same_weights(resumed_weights[epoch], log.weights[epoch]) for epoch in (4, 5, 6))
    # The same best epoch restored, from weights the resumed fit only had on disk.
    best = model.history_[-1]["best_epoch_restored"]
    assert resumed.history_[-1]["best_epoch_restored"] == best
    assert _same_weights(resumed.module_.state_dict(), model.module_.state_dict())
    assert _same_weights(resumed.module_.state_dict(), log.weights[best])
    assert np.array_equal(resumed.predict_proba(bags), model.predict_proba(bags))
    assert load_checkpoint(tmp_path)["finished"]


def test_hybrid_with_augmentation_resumes_to_the_same_weights(data: Any, tmp_path: Path) -> None:
    """Augmentation draws new views from torch's generator every batch: the stream continues."""
    bags, y, groups = data
    params = {**SCENARIO, "max_epochs": 2, "freeze_epochs": 1, "augment": True}
    straight = tiny_hybrid(**params).fit(bags, y, groups=groups)
    callbacks = [("checkpoint", TrainingCheckpoint(tmp_path)), ("crash", Crash(1))]
    with pytest.raises(RuntimeError):
        tiny_hybrid(**params, callbacks=callbacks).fit(bags, y, groups=groups)
    resumed = resume_fit(tmp_path, bags, y, groups=groups)
    assert _trajectory(resumed) == _trajectory(straight)
    assert _same_weights(resumed.module_.state_dict(), straight.module_.state_dict())


def test_ctrl_c_keeps_the_best_weights_and_the_last_checkpoint(
    data: Any, straight: Any, tmp_path: Path
) -> None:
    bags, y, groups = data
    model, log = straight
    checkpoint_cb = TrainingCheckpoint(tmp_path)
    interrupted = tiny_cnn(
        **SCENARIO, callbacks=[("checkpoint", checkpoint_cb), ("stop", CtrlC(3))]
    )
    _CTRL_C["armed"] = True
    interrupted.fit(bags, y, groups=groups)  # skorch ends training cleanly on Ctrl-C
    assert not _CTRL_C["armed"]
    # The CLI's test for "interrupted": the callback's last checkpoint is not finished.
    assert (checkpoint_cb.saved_epoch_, checkpoint_cb.finished_) == (2, False)
    # In memory: the best of the completed epochs, ready to be saved as a model.
    best = model.history_[-1]["best_epoch_restored"]
    assert interrupted.history_[-1]["best_epoch_restored"] == best
    assert _same_weights(interrupted.module_.state_dict(), log.weights[best])
    # On disk: epoch 2, which resumes to the uninterrupted result.
    assert load_checkpoint(tmp_path)["epoch"] == 2
    resumed = resume_fit(tmp_path, bags, y, groups=groups)
    assert _trajectory(resumed) == _trajectory(model)
    assert np.array_equal(resumed.predict_proba(bags), model.predict_proba(bags))


_KILL_AT_END = {"armed": False}


class CrashAtTrainEnd(Callback):
    """Killed after the last epoch's checkpoint, before the final one (once)."""

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        if _KILL_AT_END["armed"]:
            _KILL_AT_END["armed"] = False
            raise RuntimeError("killed")


def test_killed_after_the_last_epoch_resumes_to_the_final_model(
    data: Any, straight: Any, tmp_path: Path
) -> None:
    bags, y, groups = data
    model, _ = straight
    # Before the checkpoint callback, so that its on_train_end never runs.
    callbacks = [("crash", CrashAtTrainEnd()), ("checkpoint", TrainingCheckpoint(tmp_path))]
    _KILL_AT_END["armed"] = True
    with pytest.raises(RuntimeError, match="killed"):
        tiny_cnn(**SCENARIO, callbacks=callbacks).fit(bags, y, groups=groups)
    assert (load_checkpoint(tmp_path)["epoch"], load_checkpoint(tmp_path)["finished"]) == (6, False)
    # No epochs left: the resume restores the best epoch (known only from the checkpoint) and
    # marks the run finished.
    resumed = resume_fit(tmp_path, bags, y, groups=groups)
    assert _trajectory(resumed) == _trajectory(model)
    assert resumed.history_[-1]["best_epoch_restored"] == model.history_[-1]["best_epoch_restored"]
    assert _same_weights(resumed.module_.state_dict(), model.module_.state_dict())
    assert load_checkpoint(tmp_path)["finished"]


def test_finished_checkpoint_resumes_to_the_final_model(data: Any, straight: Any) -> None:
    bags, y, groups = data
    model, _ = straight
    folder = dict(model.callbacks_)["checkpoint"].dirname
    assert dict(model.callbacks_)["checkpoint"].finished_
    resumed = resume_fit(folder, bags, y, groups=groups)
    assert len(resumed.history_) == 6  # nothing trained
    assert _same_weights(resumed.module_.state_dict(), model.module_.state_dict())


def test_early_stopping_marks_the_checkpoint_finished(data: Any, tmp_path: Path) -> None:
    """Early stopping ends the fit from inside an epoch's end, like a Ctrl-C: not confused."""
    bags, y, groups = data
    callback = TrainingCheckpoint(tmp_path)
    params = {**SCENARIO, "patience": 1}
    model = tiny_cnn(**params, callbacks=[("checkpoint", callback)]).fit(bags, y, groups=groups)
    assert len(model.history_) < SCENARIO["max_epochs"]  # the premise: it stopped early
    assert callback.finished_ and load_checkpoint(tmp_path)["finished"]
    resumed = resume_fit(tmp_path, bags, y, groups=groups)
    assert len(resumed.history_) == len(model.history_)
    assert _same_weights(resumed.module_.state_dict(), model.module_.state_dict())


def test_resume_refuses_other_data(data: Any, tmp_path: Path) -> None:
    bags, y, _ = data
    callbacks = [("checkpoint", TrainingCheckpoint(tmp_path)), ("crash", Crash(1))]
    with pytest.raises(RuntimeError):
        tiny_cnn(max_epochs=2, callbacks=callbacks).fit(bags, y)
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(ValueError, match="not the data of the checkpoint"):
        resume_fit(tmp_path, bags[:-1], y[:-1])
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before  # nothing written over


def test_missing_or_foreign_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No training checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a skhybrid training checkpoint"):
        load_checkpoint(tmp_path)


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(b"epoch 2")

    def killed_mid_write(file: Any) -> None:
        file.write(b"half of epo")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _atomic_write(path, killed_mid_write)
    assert path.read_bytes() == b"epoch 2"
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no partial file left
    _atomic_write(path, lambda file: file.write(b"epoch 3"))
    assert path.read_bytes() == b"epoch 3"


def test_estimator_with_checkpoint_clones_and_pickles(data: Any, tmp_path: Path) -> None:
    model = tiny_cnn(callbacks=[("checkpoint", TrainingCheckpoint(tmp_path / "run"))])
    cloned = clone(model)
    callback = dict(cloned.get_params()["callbacks"])["checkpoint"]
    assert isinstance(callback, TrainingCheckpoint) and callback.dirname == tmp_path / "run"
    bags, y, _ = data
    model.set_params(max_epochs=1).fit(bags, y)
    loaded = pickle.loads(pickle.dumps(model))
    assert np.array_equal(loaded.predict_proba(bags), model.predict_proba(bags))
    assert dict(loaded.callbacks_)["checkpoint"]._resume_state is None


def test_self_learning_state_round_trip(data: Any, tmp_path: Path) -> None:
    assert load_self_learning_state(tmp_path) is None
    bags, y, groups = data
    relabeler = tiny_relabeler(n_rounds=1).fit(bags, y, groups=groups)
    save_self_learning_state(tmp_path / "ckpt", relabeler)
    state = load_self_learning_state(tmp_path / "ckpt")
    assert state is not None
    assert np.array_equal(state["tile_labels"], relabeler.tile_labels_)
    assert np.array_equal(state["tile_label_history"], relabeler.tile_label_history_)
    assert state["termination_condition"] == relabeler.termination_condition_
    assert len(state["history"]) == len(relabeler.history_)
    assert state["history"][0].keys() == relabeler.history_[0].keys()
