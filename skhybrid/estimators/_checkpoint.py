"""Training that survives faults: a resumable checkpoint at the end of every epoch.

:class:`TrainingCheckpoint` is a skorch callback; :func:`resume_fit` continues a fit from the
folder it writes. The checkpoint is one file, ``checkpoint.pt``, replaced atomically (written
next to it, flushed to disk, then ``os.replace``), so a kill at any moment leaves either the
previous epoch's checkpoint or this one, never half a file. It holds everything the next epoch
depends on:

- the estimator itself, pickled as :func:`~skhybrid.save_model` would (module, optimizer with
  Adam's moments, history, callbacks, ``classes_``, ``tile_shape_``, the fit seed); the
  two-phase schedule follows from the history (:class:`~._callbacks.FreezeBackbone` counts
  its epochs);
- what the pickle leaves out: the best epoch's weights and score (skorch's ``EarlyStopping``
  drops its weights from pickles), the learning-rate scheduler's state (the callback rebuilds
  its torch scheduler every run), and torch's random number generators (CPU, and the CUDA
  device trained on), from which the shuffling of the next epoch, dropout and augmentation
  draw.

Training draws nothing from numpy's or Python's global generators (the validation split is
seeded by the fit seed kept in the estimator), so those are not saved. :func:`resume_fit`
restores the state and runs the remaining epochs without re-seeding: in fp32 a resumed run
ends with the same weights as an uninterrupted one (``tests/test_checkpoint_resume.py``).

:func:`save_self_learning_state` / :func:`load_self_learning_state` keep the result of
self-learning next to the checkpoint, so that a resumed command-line run skips the
relabeling rounds it had finished.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler

__all__ = [
    "CHECKPOINT_FILE",
    "SELF_LEARNING_FILE",
    "TrainingCheckpoint",
    "fit_resumable",
    "load_checkpoint",
    "load_self_learning_state",
    "resume_fit",
    "save_self_learning_state",
]

#: The checkpoint's file name inside a :class:`TrainingCheckpoint` folder.
CHECKPOINT_FILE = "checkpoint.pt"
#: The self-learning state's file name inside the same folder.
SELF_LEARNING_FILE = "self_learning.npz"
_FORMAT = 1


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on ``path + ".partial"``, sync it, then rename it over ``path``.

    ``os.replace`` is atomic on POSIX and Windows; the ``fsync`` makes the new content durable
    before the rename, so a lost machine does not come back with an empty checkpoint.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:  # Ctrl-C mid-write included: leave no stray partial file
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX only)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _cuda_index(net: Any) -> int | None:
    device = torch.device(str(getattr(net, "device_", "cpu")))
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def _data_signature(X: Any, y: Any) -> dict[str, Any]:
    """Cheap facts about the training data a resumed fit must match."""
    tiles = getattr(X, "X", None)
    shape = list(np.shape(tiles)) if tiles is not None else [len(X)]
    counts = None if y is None else np.bincount(np.asarray(y, dtype=np.int64).ravel()).tolist()
    return {"shape": shape, "class_counts": counts}


class TrainingCheckpoint(Callback):
    """Write a resumable checkpoint of the training at the end of every epoch.

    Add it to a classifier's callbacks, e.g.
    ``CNNClassifier(..., callbacks=[("checkpoint", TrainingCheckpoint("run/checkpoint"))])``,
    and continue an interrupted fit with :func:`resume_fit`. The folder is created when
    training begins and holds one file, :data:`CHECKPOINT_FILE`, replaced atomically after
    every epoch (see the module's docstring for what it holds).

    When the fit finishes (all epochs, or early stopping) the checkpoint is written once more,
    marked finished, with the final model (best epoch restored): :func:`resume_fit` then has
    nothing left to train. An interrupted fit (Ctrl-C, which skorch turns into the end of
    training) leaves the last completed epoch's checkpoint, not marked finished.

    Parameters
    ----------
    dirname : str or path-like, default="checkpoint"
        The folder of the checkpoint. One folder per training run: estimators cloned with
        the callback (``clone``, ``GridSearchCV``) would write the same file, so do not
        search or cross-validate an estimator that carries this callback.

    Attributes
    ----------
    saved_epoch_ : int or None
        The epoch (counted over the whole history) of the last checkpoint written.
    finished_ : bool
        Whether the last checkpoint written marks a finished fit. After ``fit`` returns,
        ``False`` means training was interrupted and can be resumed.
    """

    def __init__(self, dirname: str | os.PathLike[str] = "checkpoint") -> None:
        self.dirname = dirname

    @property
    def path(self) -> Path:
        """The checkpoint file."""
        return Path(self.dirname) / CHECKPOINT_FILE

    def initialize(self) -> TrainingCheckpoint:
        self.saved_epoch_: int | None = None
        self.finished_ = False
        self._resume_state: dict[str, Any] | None = None
        return self

    # -- callback events ----------------------------------------------------------------------
    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        # Runs after the default callbacks' on_train_begin (user callbacks come last), so the
        # state they reset (best epoch) or rebuilt (the LR scheduler) can be put back here.
        state, self._resume_state = self._resume_state, None
        self.data_ = _data_signature(X, y)
        if state is None:
            self.start_epoch_ = len(net.history)
            self.end_epoch_ = self.start_epoch_ + int(net.max_epochs)
            self.finished_ = False
        else:
            if self.data_ != state["data"]:
                # Before any epoch runs or any checkpoint is written over.
                raise ValueError(
                    f"The data to resume on (shape {self.data_['shape']}, class counts "
                    f"{self.data_['class_counts']}) is not the data of the checkpoint (shape "
                    f"{state['data']['shape']}, class counts {state['data']['class_counts']})."
                )
            self.start_epoch_, self.end_epoch_ = state["start_epoch"], state["end_epoch"]
            # The pickled callback predates the save that pickled it.
            self.saved_epoch_, self.finished_ = state["epoch"], False
            self._restore_callbacks(net, state)
        Path(self.dirname).mkdir(parents=True, exist_ok=True)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self._save(net, finished=False)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        if self._finished(net):
            # After the best-epoch restore (default callbacks end first): the final model.
            self._save(net, finished=True)

    def _finished(self, net: Any) -> bool:
        if len(net.history) >= self.end_epoch_ and self.saved_epoch_ == len(net.history):
            return True
        # Early stopping raises in its on_epoch_end, before this callback's; a Ctrl-C too,
        # but only early stopping leaves its miss count at the patience.
        return any(
            isinstance(callback, EarlyStopping)
            and callback.patience is not None
            and getattr(callback, "misses_", 0) >= callback.patience
            for _, callback in net.callbacks_
        )

    # -- state --------------------------------------------------------------------------------
    def _save(self, net: Any, *, finished: bool) -> None:
        cuda = _cuda_index(net)
        payload = {
            "format": _FORMAT,
            "net": net,
            "epoch": len(net.history),
            "start_epoch": self.start_epoch_,
            "end_epoch": self.end_epoch_,
            "finished": finished,
            "data": self.data_,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": None if cuda is None else torch.cuda.get_rng_state(cuda),
            "callbacks": self._callback_states(net),
        }
        _atomic_write(self.path, lambda file: torch.save(payload, file))
        self.saved_epoch_, self.finished_ = len(net.history), finished

    @staticmethod
    def _callback_states(net: Any) -> dict[str, Any]:
        """What pickling the callbacks loses: best weights, the torch LR scheduler's state."""
        states: dict[str, Any] = {}
        for name, callback in net.callbacks_:
            if isinstance(callback, EarlyStopping):
                keys = ("best_epoch_", "dynamic_threshold_", "misses_", "best_model_weights_")
                states[name] = {key: getattr(callback, key, None) for key in keys}
            elif isinstance(callback, LRScheduler) and callback.lr_scheduler_ is not None:
                states[name] = {
                    "scheduler": callback.lr_scheduler_.state_dict(),
                    "lrs": [group["lr"] for group in net.optimizer_.param_groups],
                    "batch_idx_": getattr(callback, "batch_idx_", 0),
                }
        return states

    @staticmethod
    def _restore_callbacks(net: Any, state: dict[str, Any]) -> None:
        callbacks = dict(net.callbacks_)
        for name, saved in state["callbacks"].items():
            callback = callbacks.get(name)
            if isinstance(callback, EarlyStopping):
                for key, value in saved.items():
                    setattr(callback, key, value)
            elif isinstance(callback, LRScheduler) and callback.lr_scheduler_ is not None:
                # The rebuilt torch scheduler has already stepped once more on the
                # optimizer's learning rate: put back the rates and the schedule position.
                for group, lr in zip(net.optimizer_.param_groups, saved["lrs"], strict=True):
                    group["lr"] = lr
                callback.lr_scheduler_.load_state_dict(saved["scheduler"])
                callback.batch_idx_ = saved["batch_idx_"]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_resume_state"] = None  # transient (and it holds a whole net)
        return state


def load_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the checkpoint a :class:`TrainingCheckpoint` wrote into ``checkpoint_dir``.

    .. warning:: A checkpoint is a pickle: load only files you trust.

    Returns
    -------
    checkpoint : dict
        ``"net"`` (the estimator as it was at the end of epoch ``"epoch"``), ``"epoch"``,
        ``"end_epoch"`` (the epoch the fit was to end on), ``"finished"`` and the saved
        training state (random generators, best epoch, learning-rate schedule).

    Raises
    ------
    FileNotFoundError
        When the folder holds no checkpoint.
    ValueError
        When the file is not a skhybrid checkpoint.
    """
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No training checkpoint in {Path(checkpoint_dir)} (expected {path.name}); "
            "checkpoints are written by the TrainingCheckpoint callback."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a foreign file
        raise ValueError(f"{path} is not a skhybrid training checkpoint ({exc}).") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a skhybrid training checkpoint (format {_FORMAT}).")
    return checkpoint


@contextlib.contextmanager
def _restored_rng(checkpoint: dict[str, Any], net: Any) -> Iterator[None]:
    """torch's generators as they were at the checkpoint; the caller's are back after."""
    cuda = _cuda_index(net)
    with torch.random.fork_rng(devices=[] if cuda is None else [cuda]):
        torch.set_rng_state(checkpoint["torch_rng"])
        if cuda is not None and checkpoint["cuda_rng"] is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], cuda)
        yield


def resume_fit(checkpoint_dir: str | os.PathLike[str], X: Any, y: Any, groups: Any = None) -> Any:
    """Continue the fit whose :class:`TrainingCheckpoint` wrote ``checkpoint_dir``.

    The estimator is rebuilt from the checkpoint (its parameters, weights, optimizer,
    history, best epoch, learning-rate schedule, random generators) and trained for the
    epochs the interrupted fit had left, without re-seeding: with the same data, in fp32, it
    ends with the same weights and predictions as a fit that was never interrupted. It keeps
    writing checkpoints into ``checkpoint_dir``. A checkpoint marked finished is returned as
    it is, with no training.

    Parameters
    ----------
    checkpoint_dir : str or path-like
        The folder of the :class:`TrainingCheckpoint`.
    X, y, groups
        The same data the interrupted ``fit(X, y, groups)`` received.

    Returns
    -------
    estimator : TileNetClassifier
        The fitted estimator (a new object, not the one that was interrupted).

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`load_checkpoint`; ``ValueError`` also when ``X``/``y`` do not match the
        shape and class counts of the data the checkpoint was trained on.
    """
    checkpoint = load_checkpoint(checkpoint_dir)
    net = checkpoint["net"]
    if checkpoint["finished"]:
        return net
    callback = next((cb for _, cb in net.callbacks_ if isinstance(cb, TrainingCheckpoint)), None)
    if callback is None:  # pragma: no cover - the checkpoint is written by this callback
        raise ValueError(f"{checkpoint_dir} was not written by a TrainingCheckpoint.")
    callback.dirname = checkpoint_dir  # the folder may have moved since
    callback._resume_state = checkpoint
    remaining = checkpoint["end_epoch"] - checkpoint["epoch"]
    with _restored_rng(checkpoint, net):
        net._fit(X, y, groups, keep_state=True, epochs=remaining)
    return net


def fit_resumable(
    estimator: Any, checkpoint_dir: str | os.PathLike[str], X: Any, y: Any, groups: Any = None
) -> Any:
    """Fit ``estimator`` with a checkpoint in ``checkpoint_dir``, or resume the one there.

    The one call for a training that must survive faults (the command line's ``train`` makes
    it): with no checkpoint in the folder, a clone of ``estimator`` with a
    :class:`TrainingCheckpoint` added to its ``callbacks`` is fitted; with one, the fit
    continues from it (:func:`resume_fit`; ``estimator`` is then not used, the checkpoint
    holds the estimator). The returned estimator has the callbacks it was given, without the
    checkpoint, so that fitting it again later does not write into ``checkpoint_dir``.

    Parameters
    ----------
    estimator : TileNetClassifier
        Unfitted; cloned.
    checkpoint_dir : str or path-like
        The checkpoint's folder.
    X, y, groups
        As for ``estimator.fit``; the same data on every resume.

    Returns
    -------
    estimator : TileNetClassifier
        Fitted, the best epoch's weights restored.

    Raises
    ------
    TrainingInterrupted
        When training stopped before its end (Ctrl-C): it carries the estimator with the best
        weights among the completed epochs; the checkpoint stays, ready to resume.
    ValueError
        When the checkpoint's data (shape, class counts) is not ``X``/``y``.
    """
    from sklearn.base import clone

    from ..exceptions import TrainingInterrupted

    if (Path(checkpoint_dir) / CHECKPOINT_FILE).is_file():
        net = resume_fit(checkpoint_dir, X, y, groups)
    else:
        net = clone(estimator)
        given = net.callbacks
        own = [] if given in (None, "disable") else list(given)
        net.set_params(callbacks=[*own, ("checkpoint", TrainingCheckpoint(checkpoint_dir))])
        # What to put back once trained; pickled with the checkpoint, so a resume knows it.
        net._given_callbacks = given
        net.fit(X, y, groups=groups)
    callback = next(cb for _, cb in net.callbacks_ if isinstance(cb, TrainingCheckpoint))
    net.callbacks = net.__dict__.pop("_given_callbacks", None)
    net.callbacks_ = [(n, cb) for n, cb in net.callbacks_ if cb is not callback]
    if not callback.finished_:
        # saved_epoch_: the epochs completed (skorch leaves the interrupted one's row too).
        raise TrainingInterrupted(net, callback.saved_epoch_ or 0, str(checkpoint_dir))
    return net


def save_self_learning_state(checkpoint_dir: str | os.PathLike[str], relabeler: Any) -> Path:
    """Keep a fitted :class:`~skhybrid.SelfLearningRelabeler`'s result next to a checkpoint.

    Writes :data:`SELF_LEARNING_FILE` atomically: the tile labels, their per-round history,
    the rounds' summary (``history_``) and the termination condition, i.e. what the final
    training and the run's report need, so a resumed run skips the relabeling.

    Returns
    -------
    path : Path
    """
    path = Path(checkpoint_dir) / SELF_LEARNING_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "tile_labels": np.asarray(relabeler.tile_labels_),
        "tile_label_history": np.asarray(relabeler.tile_label_history_),
        "history": np.array(json.dumps(relabeler.history_, default=_json_default)),
        "termination_condition": np.array(str(relabeler.termination_condition_)),
    }
    _atomic_write(path, lambda file: np.savez(file, **arrays))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_self_learning_state(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state :func:`save_self_learning_state` wrote, or None when there is none.

    Returns
    -------
    state : dict or None
        ``"tile_labels"``, ``"tile_label_history"`` (arrays), ``"history"`` (list of dicts,
        as ``SelfLearningRelabeler.history_``, with JSON types), ``"termination_condition"``.
    """
    path = Path(checkpoint_dir) / SELF_LEARNING_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {
            "tile_labels": data["tile_labels"],
            "tile_label_history": data["tile_label_history"],
            "history": json.loads(str(data["history"])),
            "termination_condition": str(data["termination_condition"]),
        }
