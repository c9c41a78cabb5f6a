"""skorch callbacks of the two-phase training."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler

from ._data import ArrayDataset, pooled_features_into

__all__ = ["BatchAccuracy", "BestEpoch", "FeatureCache", "FreezeBackbone", "PicklableLRScheduler"]


class FreezeBackbone(Callback):
    """Phase 1 of transfer learning: keep the CNN frozen for the first ``epochs`` epochs.

    At the start of each epoch the module's ``freeze_backbone`` is called with
    ``epoch <= epochs`` (epochs count from 1 over the net's whole history, so ``partial_fit``
    continues the schedule). The optimizer holds all parameters from the start: frozen ones
    have no gradient, which Adam skips, so unfreezing needs no new optimizer. The history
    records ``backbone_frozen`` per epoch.

    Parameters
    ----------
    epochs : int or None, default=None
        Frozen epochs. ``None`` reads the net's ``freeze_epochs_`` (the estimators'
        resolved ``freeze_epochs``) at every epoch, 0 if it has none.
    """

    def __init__(self, epochs: int | None = None) -> None:
        self.epochs = epochs

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        epochs = self.epochs if self.epochs is not None else getattr(net, "freeze_epochs_", 0)
        frozen = len(net.history) <= epochs
        net.module_.freeze_backbone(frozen)
        net.history.record("backbone_frozen", frozen)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        # A fitted model is a plain trainable module again (warm starts, manual fine-tuning).
        net.module_.freeze_backbone(False)


class FeatureCache(Callback):
    """Phase 1 with a frozen CNN: its pooled features of every tile, computed once.

    A frozen backbone (eval mode, no gradient) maps a tile to the same features every epoch,
    so when an epoch begins with the backbone frozen (after :class:`FreezeBackbone`, which
    must come first in the callbacks) the features of all rows of the training data
    (training and validation rows: ``n_tiles x C`` floats on the device) are computed in
    one pass and :meth:`lookup` serves them to the net's ``infer`` by row index; they are
    freed when an epoch begins with the backbone unfrozen, and at the end of training.

    It works only when the training data is an :class:`ArrayDataset` serving row indices
    (``with_index=True``, as the estimators' ``fit`` builds it), the net's
    ``cache_features`` is true, no augmentation is on (``augment`` empty or False: every epoch of an augmented fit sees new views) and the
    module ``accepts_cached_features``; otherwise it does nothing and :meth:`lookup` returns
    None.
    """

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        applies = (
            isinstance(X, ArrayDataset)
            and X.with_index
            and bool(getattr(net, "cache_features", True))
            and not getattr(net, "augment", False)
            and getattr(net.module_, "accepts_cached_features", False)
        )
        # Transient state: the training tiles (a reference) and their features.
        self.tiles_: np.ndarray | None = X.X if applies else None
        self.features_: torch.Tensor | None = None

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        if self.tiles_ is None or not net.module_.backbone_frozen:
            self.features_ = None
            return
        if self.features_ is None:
            tiles = self.tiles_
            batch_size = net.batch_size if net.batch_size > 0 else len(tiles)  # -1: all
            self.features_ = pooled_features_into(
                torch.empty((len(tiles), net.module_.backbone.out_channels), device=net.device_),
                net.module_,
                tiles,
                batch_size=batch_size,
                device=net.device_,
                precision=net.precision,
            )

    def lookup(self, index: torch.Tensor) -> torch.Tensor | None:
        """Cached pooled features ``(B, C)`` of training rows ``index``, or None."""
        features = getattr(self, "features_", None)
        if features is None:
            return None
        return features[index.to(features.device)]

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        self.tiles_ = self.features_ = None

    def __getstate__(self) -> dict[str, Any]:
        # Never pickled (a fit interrupted by an exception skips on_train_end).
        state = self.__dict__.copy()
        state["tiles_"] = state["features_"] = None
        return state


class BatchAccuracy(Callback):
    """Accuracy of the epoch from the predictions the loss was computed on.

    skorch's ``EpochScoring`` would call ``net.predict`` on a dataset; the estimators'
    ``predict`` takes arrays and returns labels, and the logits are already at hand here.
    """

    def __init__(self, name: str = "valid_acc", on_train: bool = False) -> None:
        self.name = name
        self.on_train = on_train

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        self.correct_: torch.Tensor | int = 0
        self.seen_ = 0

    def on_batch_end(
        self, net: Any, batch: Any = None, training: bool = False, **kwargs: Any
    ) -> None:
        if training != self.on_train or kwargs.get("y_pred") is None:
            return
        y_true = batch[1].to(kwargs["y_pred"].device)
        # Summed on the device; one synchronisation per epoch, not per batch.
        self.correct_ = self.correct_ + (kwargs["y_pred"].argmax(dim=1) == y_true).sum()
        self.seen_ += len(y_true)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        # A plain int from here on: a CUDA tensor left in a callback would make the pickled
        # model unloadable on a CPU-only machine.
        self.correct_ = int(self.correct_)
        if self.seen_:
            net.history.record(self.name, self.correct_ / self.seen_)


class PicklableLRScheduler(LRScheduler):
    """skorch's ``LRScheduler`` without its torch scheduler in the pickle.

    The torch scheduler holds the optimizer, hence every parameter tensor: pickled with the
    callback it would store the weights a second time, on the training device (a CUDA model
    would not unpickle on a CPU-only machine), and come back bound to a stale optimizer copy.
    skorch rebuilds it at the start of every training run with ``last_epoch`` taken from the
    history, so a resumed fit continues the decay where it stopped.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["lr_scheduler_"] = None
        return state


class BestEpoch(EarlyStopping):
    """``EarlyStopping(load_best=True)`` that remembers the best epoch across fit sessions.

    skorch forgets the best score and weights at the start of every training run, so a
    resumed fit (``partial_fit``, ``warm_start``, an interrupted run continued) whose new
    epochs are all worse would end on worse weights than the best epoch in its history. Here,
    when the previous run ended by restoring its best weights (recorded in the history as
    ``best_epoch_restored``), the model starts the new run holding exactly those weights, so
    they become the best to beat. A run resumed from a checkpoint taken mid-training has no
    such record and starts afresh, as in skorch.
    """

    def __init__(self, monitor: str = "valid_loss", patience: int | None = None) -> None:
        super().__init__(monitor=monitor, patience=patience, load_best=True)

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        super().on_train_begin(net, **kwargs)
        if not len(net.history):
            return
        restored = net.history[-1].get("best_epoch_restored")
        if restored is None:
            return
        best_row = next(row for row in net.history if row["epoch"] == restored)
        self.dynamic_threshold_ = self._calc_new_threshold(best_row[self.monitor])
        self.best_epoch_ = restored
        self.best_model_weights_ = deepcopy(net.module_.state_dict())

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        super().on_train_end(net, **kwargs)
        if self.best_model_weights_ is not None and len(net.history):
            net.history.record("best_epoch_restored", self.best_epoch_)
