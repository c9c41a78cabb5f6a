"""The skorch base of the tile classifiers: data flow, two-phase training, device, pickling.

Subclasses only declare their parameters (``__init__``) and which of them build the module
(``_module_kwargs``); everything else (validation in ``fit``, label encoding, the group-aware
validation split, uint8 batches, the training callbacks, bag aggregation) lives here.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier
from skorch.callbacks import (
    EpochTimer,
    PassthroughScoring,
    PrintLog,
    ProgressBar,
)
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch import nn
from torch.utils.data import Subset

from ..class_roles import resolve_class_roles
from ..nn import available_backbones
from ..nn.augment import random_dihedral
from ..tiling import unflatten_tiles
from ._aggregate import AGGREGATIONS, aggregate_proba
from ._callbacks import BatchAccuracy, BestEpoch, FreezeBackbone, PicklableLRScheduler
from ._data import (
    ArrayDataset,
    batch_passthrough,
    encode_labels,
    group_train_valid_split,
    pooled_features_into,
    prepare_fit_inputs,
    prepare_predict_tiles,
)
from ._runtime import (
    PRECISIONS,
    autocast,
    resolve_device,
    resolve_precision,
    seed_from,
    seeded_torch,
)

__all__ = ["TileNetClassifier"]

# Estimator parameters that may hold an nn.Module and must stay plain attributes: skorch's
# __setattr__ would otherwise register a module assigned after __init__ as a net component.
_PLAIN_MODULE_PARAMS = frozenset({"backbone"})


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def check_choice(name: str, value: Any, valid: Any) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid values are {list(valid)}.")


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False):
    kind = numbers.Integral if integer else numbers.Real
    if not isinstance(value, kind) or isinstance(value, bool) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {what} in [{low}, {high}], got {value!r}.")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")


class TileNetClassifier(NeuralNetClassifier):
    """Base class of :class:`CNNClassifier` and :class:`HybridCNNLSTMClassifier`.

    Not meant to be used directly; see the subclasses for the parameters.
    """

    # -- parameters ---------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PLAIN_MODULE_PARAMS:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _get_param_names(self) -> list[str]:
        # skorch lists every attribute not ending in "_", including its private
        # `_params_to_validate`; it is bookkeeping, not a parameter (clone recomputes it).
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def _check_params(self) -> None:
        """Validate the scikit-learn-style parameters (called by ``fit``, not ``__init__``)."""
        backbone = self.backbone
        if not isinstance(backbone, nn.Module) and backbone not in available_backbones():
            raise ValueError(
                f"Unknown backbone {backbone!r}; valid names are {available_backbones()} "
                "(or pass an nn.Module)."
            )
        weights = self.weights
        if not (weights is None or isinstance(weights, (str, os.PathLike))):
            raise ValueError(
                f"weights must be 'imagenet', None or a path to a state dict, got {weights!r}."
            )
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        check_choice("precision", self.precision, PRECISIONS)
        _check_number("freeze_epochs", self.freeze_epochs, 0, np.inf, integer=True)
        _check_number("max_epochs", self.max_epochs, 1, np.inf, integer=True)
        _check_number("lr_decay", self.lr_decay, 0.0, 1.0)
        _check_number("label_smoothing", self.label_smoothing, 0.0, 1.0)
        _check_number("dropout", self.dropout, 0.0, 1.0)
        if self.patience is not None:
            _check_number("patience", self.patience, 1, np.inf, integer=True)
        if self.valid_size is not None and self.valid_size != 0:
            _check_number("valid_size", self.valid_size, 0.0, 0.9)
        _check_flag("augment", self.augment)
        _check_flag("cache_features", self.cache_features)

    def _module_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of ``module`` derived from the estimator's parameters."""
        # A module passed as backbone is a parameter: training must not change it in place.
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            backbone = copy.deepcopy(backbone)
        return {
            "backbone": backbone,
            "n_classes": len(self.classes_),
            "weights": self.weights,
            "dropout": self.dropout,
            "tile_shape": self.tile_shape_,
        }

    # -- device -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _concrete_device(self) -> Iterator[None]:
        """Let skorch's internals see the resolved device while the block runs.

        ``device="auto"`` is a parameter value and must stay what ``get_params`` returns, but
        skorch moves modules and targets with ``.to(self.device)``. Inside this block (fit,
        initialisation) ``self.device`` is the concrete device; ``device_`` keeps it after.
        """
        requested = self.device
        resolved = resolve_device(requested)
        self.device_ = resolved
        if not _is_auto(requested):
            yield
            return
        self.__dict__["device"] = resolved
        try:
            yield
        finally:
            if self.__dict__.get("device") == resolved:  # unless set_params changed it
                self.__dict__["device"] = requested

    def initialize(self) -> TileNetClassifier:
        if not hasattr(self, "tile_shape_"):
            raise ValueError(
                f"{type(self).__name__} builds its module from the data; call fit(X, y)."
            )
        with self._concrete_device():
            return super().initialize()

    def set_params(self, **params: Any) -> TileNetClassifier:
        if not self.initialized_:
            return super().set_params(**params)
        with self._concrete_device():  # may re-initialise the module on the device
            return super().set_params(**params)

    def load_params(self, *args: Any, **kwargs: Any) -> None:
        with self._concrete_device():
            super().load_params(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # skorch maps the tensors to state["device"], falling back to the CPU when CUDA is
        # missing. "auto" means "whatever this machine has", decided here, quietly.
        requested = state.get("device")
        if _is_auto(requested):
            state["device"] = resolve_device("auto")
        super().__setstate__(state)
        self.device_ = str(self.device)
        if _is_auto(requested):
            self.__dict__["device"] = requested

    # -- module, criterion, callbacks ---------------------------------------------------------
    def initialize_module(self) -> TileNetClassifier:
        kwargs = {**self._module_kwargs(), **self.get_params_for("module")}
        if isinstance(self.module, nn.Module):
            raise ValueError(
                "module must be a module class (built from the estimator's parameters); "
                "pass a custom network as backbone=<nn.Module> instead."
            )
        self.module_ = self.module(**kwargs)
        return self

    def initialize_criterion(self) -> TileNetClassifier:
        kwargs = self.get_params_for("criterion")
        criterion_cls = self.criterion if isinstance(self.criterion, type) else None
        if criterion_cls is not None and issubclass(criterion_cls, nn.CrossEntropyLoss):
            kwargs.setdefault("label_smoothing", float(self.label_smoothing))
        self.criterion_ = self.initialized_instance(self.criterion, kwargs)
        return self

    def _has_validation(self) -> bool:
        if _is_auto(self.train_split):
            return bool(self.valid_size)
        return self.train_split is not None

    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        callbacks: list[tuple[str, Any]] = [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_acc", BatchAccuracy()),
            ("freeze_backbone", FreezeBackbone(self.freeze_epochs)),
            ("lr_scheduler", PicklableLRScheduler(torch.optim.lr_scheduler.ExponentialLR,
                                         gamma=self.lr_decay)),
        ]  # fmt: skip
        if self._has_validation():
            # patience=None never stops early but still restores the best epoch, in memory
            # (BestEpoch keeps a deepcopy of the state dict: no files to clash under
            # parallel search).
            best = BestEpoch(monitor="valid_loss", patience=self.patience)
            callbacks.append(("best_epoch", best))
        callbacks.append(("print_log", PrintLog()))
        if isinstance(self.verbose, numbers.Integral) and self.verbose >= 2:
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks

    # -- data ---------------------------------------------------------------------------------
    def check_data(self, X: Any, y: Any = None) -> None:
        """Inputs are validated and labels encoded in ``fit`` before skorch sees them."""

    def get_split_datasets(
        self, X: Any, y: Any = None, groups: Any = None, **fit_params: Any
    ) -> tuple[Any, Any]:
        """Group-aware train/validation split (``train_split="auto"``).

        ``groups`` reaches this method as a fit parameter (skorch hands fit parameters to the
        split); the modules ignore it (see :meth:`infer`).
        """
        if not _is_auto(self.train_split):
            if groups is not None:
                fit_params["groups"] = groups
            return super().get_split_datasets(X, y, **fit_params)
        dataset = self.get_dataset(X, y)
        if not self.valid_size:
            return dataset, None
        train, valid = group_train_valid_split(
            np.asarray(y), groups, float(self.valid_size), self._fit_seed_
        )
        return Subset(dataset, train), Subset(dataset, valid)

    def get_dataset(self, X: Any, y: Any = None) -> Any:
        dataset = super().get_dataset(X, y)
        # Inside fit, batches of the training data carry their row index for the phase-1
        # feature cache (see _cached_features).
        if (
            X is self.__dict__.get("_cache_source")
            and isinstance(dataset, ArrayDataset)
            and self._feature_cache_applies()
        ):
            dataset.with_index = True
        return dataset

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        batch_size = kwargs.setdefault("batch_size", self.batch_size)
        if batch_size == -1:
            kwargs["batch_size"] = batch_size = len(dataset)
        if hasattr(dataset, "__getitems__"):
            kwargs.setdefault("collate_fn", batch_passthrough)
        if training:
            kwargs.setdefault("shuffle", True)
            # BatchNorm cannot train on a batch of one sample with a 1x1 feature map.
            kwargs.setdefault("drop_last", len(dataset) % batch_size == 1 and len(dataset) > 1)
        if str(getattr(self, "device_", "cpu")).startswith("cuda"):
            kwargs.setdefault("pin_memory", True)
        iterator = self.iterator_train if training else self.iterator_valid
        return iterator(dataset, **kwargs)

    # -- steps --------------------------------------------------------------------------------
    def infer(self, x: Any, **fit_params: Any) -> torch.Tensor:
        """Forward a uint8 batch on the device; ``fit_params`` (``groups``) are not for it.

        A batch with row indices (``{"images", "index"}``, training data inside ``fit``) takes
        the frozen CNN's pooled features from the phase-1 cache instead of recomputing them.
        """
        index = None
        if isinstance(x, dict):
            x, index = x["images"], x["index"]
        x = to_tensor(x, device=None)
        x = x.to(self.device_, non_blocking=True)
        cached = None if index is None else self._cached_features(index)
        with autocast(self.device_, self.precision):
            if cached is None:
                return self.module_(x).float()
            return self.module_(x, cnn_pooled=cached).float()

    # -- phase 1: features of the frozen CNN, computed once --------------------------------------
    def _feature_cache_applies(self) -> bool:
        """Caching is exact only when a frozen CNN sees the same tiles every epoch."""
        return (
            bool(self.cache_features)
            and not self.augment
            and self.freeze_epochs > 0
            and getattr(self.module_, "accepts_cached_features", False)
        )

    def _cached_features(self, index: torch.Tensor) -> torch.Tensor | None:
        """Pooled CNN features of training rows ``index``, or None outside phase 1.

        Computed for every training and validation row at the first frozen batch, in eval
        mode and without autograd (as the frozen backbone runs anyway), and freed when the
        backbone is unfrozen: memory ``n_tiles x C`` floats, only during phase 1.
        """
        if not self.module_.backbone_frozen or not self._feature_cache_applies():
            self.__dict__.pop("_feature_cache", None)
            return None
        cache = self.__dict__.get("_feature_cache")
        if cache is None:
            source = self.__dict__["_cache_source"]
            cache = pooled_features_into(
                torch.empty((len(source), self.module_.backbone.out_channels), device=self.device_),
                self.module_,
                source,
                batch_size=self.batch_size,
                device=self.device_,
                precision=self.precision,
            )
            self.__dict__["_feature_cache"] = cache
        return cache[index.to(cache.device)]

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        if self.augment:
            Xi = random_dihedral(to_tensor(Xi, device=self.device_))
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    # -- fit ----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None) -> TileNetClassifier:
        """Train on images/tiles or bags.

        Parameters
        ----------
        X : uint8 array of shape (n, H, W, 3) or (n, T, h, w, 3)
            Images (or tiles), or bags of ``T`` tiles per image from
            :class:`~skhybrid.tiling.SubImageTiler`.
        y : array-like of shape (n,) or (n, T)
            One label per image; with bags, optionally one label per tile.
        groups : array-like of shape (n,), optional
            Group of each image (e.g. patient) for the internal validation split, which
            never puts one group on both sides. With bags the image is always a group:
            tiles of one image are never split.

        Returns
        -------
        self
        """
        return self._fit(X, y, groups, keep_state=bool(self.warm_start))

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, groups: Any = None
    ) -> TileNetClassifier:
        """Continue training for ``max_epochs`` more epochs (fit from scratch if unfitted).

        ``classes`` is accepted for scikit-learn compatibility; set the ``classes``
        parameter to fix the label set before the first call.
        """
        return self._fit(X, y, groups, keep_state=True)

    def _fit(self, X: Any, y: Any, groups: Any, *, keep_state: bool) -> TileNetClassifier:
        self._check_params()
        data = prepare_fit_inputs(X, y, groups)
        continuing = keep_state and self.initialized_ and hasattr(self, "classes_inferred_")
        if continuing:
            _, codes = encode_labels(data.y, self.classes_)
        else:
            classes, codes = encode_labels(data.y, self.classes)
            if len(classes) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in y, got {classes.tolist()}."
                )
            self.classes_inferred_ = classes
            self.tile_shape_ = (int(data.tiles.shape[1]), int(data.tiles.shape[2]))
            self._fit_seed_ = seed_from(self.random_state)
        with self._concrete_device():
            self.precision_ = resolve_precision(self.precision, self.device_)
            seed = None if continuing else self._fit_seed_
            with seeded_torch(seed, self.device_):
                if not continuing:
                    self.initialize()
                # Transient, never pickled: the training tiles (for the phase-1 cache).
                self.__dict__["_cache_source"] = data.tiles
                try:
                    NeuralNet.partial_fit(self, data.tiles, codes, groups=data.groups)
                finally:
                    self.__dict__.pop("_cache_source", None)
                    self.__dict__.pop("_feature_cache", None)
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _tile_proba(self, tiles: np.ndarray) -> np.ndarray:
        nonlinearity = self._get_predict_nonlinearity()
        out = np.empty((len(tiles), len(self.classes_)), dtype=np.float64)
        position = 0
        with torch.inference_mode():
            for logits in self.forward_iter(tiles, training=False):
                proba = nonlinearity(logits).double().numpy()
                out[position : position + len(proba)] = proba
                position += len(proba)
        return out

    def predict_proba_tiles(self, X: Any) -> np.ndarray:
        """Class probabilities of every tile of bags ``(n, T, h, w, 3)``: ``(n, T, k)``."""
        self.check_is_fitted()
        tiles, n_tiles = prepare_predict_tiles(X)
        if n_tiles is None:
            raise ValueError(
                "predict_proba_tiles takes bags (n, T, h, w, 3); for images or single tiles "
                "use predict_proba."
            )
        return unflatten_tiles(self._tile_proba(tiles), n_tiles)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, k)`` (columns in the order of ``classes_``).

        For images/tiles ``(n, H, W, 3)`` one softmax row per input; for bags
        ``(n, T, h, w, 3)`` the tile probabilities of each image aggregated by
        ``aggregation`` (every row sums to 1).
        """
        self.check_is_fitted()  # NotFittedError before any complaint about X
        check_choice("aggregation", self.aggregation, AGGREGATIONS)
        tiles, n_tiles = prepare_predict_tiles(X)
        proba = self._tile_proba(tiles)
        if n_tiles is None:
            return proba
        negative_index = 0
        if self.aggregation == "mil":
            negative_index = resolve_class_roles(
                self.classes_, negative_class=getattr(self, "negative_class", None)
            ).negative_index
        return aggregate_proba(
            unflatten_tiles(proba, n_tiles), self.aggregation, negative_index=negative_index
        )

    def predict(self, X: Any) -> np.ndarray:
        """Labels from ``classes_``: the most probable class of each image (or tile)."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError on an unfitted model
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # images are 4-D; the closest tag sklearn has
        tags.non_deterministic = self.random_state is None
        return tags
