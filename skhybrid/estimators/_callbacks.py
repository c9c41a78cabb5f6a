"""skorch callbacks of the two-phase training."""

from __future__ import annotations

from typing import Any

import torch
from skorch.callbacks import Callback

__all__ = ["BatchAccuracy", "FreezeBackbone"]


class FreezeBackbone(Callback):
    """Phase 1 of transfer learning: keep the CNN frozen for the first ``epochs`` epochs.

    At the start of each epoch the module's ``freeze_backbone`` is called with
    ``epoch <= epochs`` (epochs count from 1 over the net's whole history, so ``partial_fit``
    continues the schedule). The optimizer holds all parameters from the start: frozen ones
    have no gradient, which Adam skips, so unfreezing needs no new optimizer. The history
    records ``backbone_frozen`` per epoch.
    """

    def __init__(self, epochs: int = 0) -> None:
        self.epochs = epochs

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        frozen = len(net.history) <= self.epochs
        net.module_.freeze_backbone(frozen)
        net.history.record("backbone_frozen", frozen)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        # A fitted model is a plain trainable module again (warm starts, manual fine-tuning).
        net.module_.freeze_backbone(False)


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
        if self.seen_:
            net.history.record(self.name, float(self.correct_) / self.seen_)
