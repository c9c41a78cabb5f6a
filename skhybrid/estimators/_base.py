"""The skorch base of the tile classifiers: data flow, two-phase training, prediction.

Subclasses only declare their parameters (``__init__``, ``_parameter_constraints``) and which
of them build the module (``_module_kwargs``); the rest (validation in ``fit``, label
encoding, the group-aware validation split, uint8 batches, the training callbacks, bag
aggregation) lives here. The ``"auto"`` device is :class:`~._device.AutoDeviceMixin`, the
phase-1 feature cache the :class:`~._callbacks.FeatureCache` callback, the aggregation rules
:mod:`._aggregate`.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.class_weight import compute_class_weight
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

from ..class_roles import resolve_negative_classes
from ..nn import available_backbones
from ..nn.augment import random_dihedral
from ..nn.backbones import is_backbone_name
from ..nn.stain_augment import random_stain_jitter
from ..tiling import unflatten_tiles
from ._aggregate import AGGREGATIONS, aggregate_proba
from ._callbacks import (
    BatchAccuracy,
    BestEpoch,
    FeatureCache,
    FreezeBackbone,
    PicklableLRScheduler,
)
from ._data import (
    ArrayDataset,
    batch_passthrough,
    encode_labels,
    group_train_valid_split,
    prepare_fit_inputs,
    prepare_predict_tiles,
)
from ._device import AutoDeviceMixin, _is_auto
from ._runtime import (
    PRECISIONS,
    autocast,
    resolve_precision,
    seed_from,
    seeded_torch,
)

__all__ = ["AUGMENTATIONS", "AUTO_FREEZE_EPOCHS", "TileNetClassifier", "resolve_augment"]

# Estimator parameters that may hold an nn.Module and must stay plain attributes: skorch's
# __setattr__ would otherwise register a module assigned after __init__ as a net component.
_PLAIN_MODULE_PARAMS = frozenset({"backbone"})


class _BackboneName(StrOptions):
    """A backbone name :func:`skhybrid.nn.build_backbone` knows: the registry or ``timm:<model>``.

    The registry's names are the options; the open set of timm model names is accepted by the
    registry's own test (:func:`skhybrid.nn.backbones.is_backbone_name`). A ``StrOptions``
    subclass because scikit-learn accepts only its own constraint classes.
    """

    def __init__(self) -> None:
        super().__init__(set(available_backbones()))

    def is_satisfied_by(self, val: Any) -> bool:
        return is_backbone_name(val)

    def __str__(self) -> str:
        return f"a str among {sorted(available_backbones())} or 'timm:<a timm model name>'"


#: The constraint of ``backbone`` (shared with CNNFeatureExtractor).
BACKBONE_CONSTRAINT = [_BackboneName(), nn.Module]
#: The constraint of ``weights``: "imagenet", None or a path to a state dict.
WEIGHTS_CONSTRAINT = [str, os.PathLike, None]
#: Phase-1 epochs of ``freeze_epochs="auto"`` when the CNN starts from pretrained weights.
AUTO_FREEZE_EPOCHS = 10

#: The names ``augment`` accepts, in the order they are applied: ``"dihedral"``, random flips
#: and 90-degree rotations (:func:`~skhybrid.nn.augment.random_dihedral`); ``"stain"``, random
#: HED stain jitter (:func:`~skhybrid.nn.stain_augment.random_stain_jitter`).
AUGMENTATIONS = ("dihedral", "stain")


class _AugmentationList(StrOptions):
    """A list or tuple of names from :data:`AUGMENTATIONS` (e.g. ``["dihedral", "stain"]``).

    A ``StrOptions`` subclass because scikit-learn accepts only its own constraint classes;
    the names are its options, so the error message lists them.
    """

    def __init__(self) -> None:
        super().__init__(set(AUGMENTATIONS))

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, (list, tuple)) and all(
            isinstance(name, str) and name in self.options for name in val
        )

    def __str__(self) -> str:
        return f"a list of names among {sorted(self.options)}"


#: The constraint of ``augment``: a bool, one name, or a list of names.
AUGMENT_CONSTRAINT = ["boolean", StrOptions(set(AUGMENTATIONS)), _AugmentationList()]


def resolve_augment(augment: bool | str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The augmentations ``augment`` names, in the order of :data:`AUGMENTATIONS`.

    ``False`` (or an empty list) is none; ``True`` is ``("dihedral",)``, what it meant before
    stain jitter existed; a name or a list of names is those (repeats count once). The order
    is fixed, whatever the list's order, so that ``["stain", "dihedral"]`` and
    ``["dihedral", "stain"]`` draw the same random numbers and train the same model (the two
    commute: one moves pixels, the other changes every pixel of an image alike).
    Assumes a valid value (see :data:`AUGMENT_CONSTRAINT`).
    """
    if isinstance(augment, (bool, np.bool_)):
        return ("dihedral",) if augment else ()
    names = {augment} if isinstance(augment, str) else set(augment)
    return tuple(name for name in AUGMENTATIONS if name in names)


class TileNetClassifier(AutoDeviceMixin, NeuralNetClassifier):
    """Base class of :class:`CNNClassifier` and :class:`HybridCNNLSTMClassifier`.

    Not meant to be used directly; see the subclasses for the parameters. A subclass
    declares its own parameters in ``__init__`` (explicitly, for scikit-learn's
    ``get_params``), their constraints in ``_parameter_constraints`` and the module's
    arguments in ``_module_kwargs``.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "backbone": BACKBONE_CONSTRAINT,
        "weights": WEIGHTS_CONSTRAINT,
        "freeze_epochs": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr_decay": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "label_smoothing": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "dropout": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "aggregation": [StrOptions(set(AGGREGATIONS))],
        "negative_class": "no_validation",  # any label; checked against classes_ when used
        "negative_classes": "no_validation",  # likewise, a collection of labels
        "augment": AUGMENT_CONSTRAINT,
        "stain_jitter": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "cache_features": ["boolean"],
        "patience": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "valid_size": [Interval(numbers.Real, 0.0, 0.9, closed="both"), None],
        "precision": [StrOptions(set(PRECISIONS))],
    }

    def __init__(
        self,
        module: Any,
        *,
        backbone: str | nn.Module,
        weights: Any,
        freeze_epochs: int,
        max_epochs: int,
        lr: float,
        batch_size: int,
        lr_decay: float,
        label_smoothing: float,
        class_weight: Any,
        dropout: float,
        aggregation: str,
        negative_class: Any,
        negative_classes: Any,
        augment: bool | str | list[str],
        stain_jitter: float,
        cache_features: bool,
        patience: int | None,
        valid_size: float | None,
        device: Any,
        random_state: Any,
        verbose: int,
        precision: str,
        criterion: Any,
        optimizer: Any,
        train_split: Any,
        classes: Any,
        **kwargs: Any,
    ) -> None:
        # Set before skorch's __init__, which treats attributes set later as components.
        self.backbone = backbone
        self.weights = weights
        self.freeze_epochs = freeze_epochs
        self.lr_decay = lr_decay
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.dropout = dropout
        self.aggregation = aggregation
        self.negative_class = negative_class
        self.negative_classes = negative_classes
        self.augment = augment
        self.stain_jitter = stain_jitter
        self.cache_features = cache_features
        self.patience = patience
        self.valid_size = valid_size
        self.random_state = random_state
        self.precision = precision
        kwargs.setdefault("dataset", ArrayDataset)
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            classes=classes,
            device=device,
            verbose=verbose,
            **kwargs,
        )

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

    def _check_params(self, names: Any = None) -> None:
        """Check ``_parameter_constraints`` (all, or ``names``) as scikit-learn does.

        skorch's ``NeuralNet._validate_params`` checks its ``prefix__name`` arguments and
        shadows scikit-learn's method of that name, so the constraints are checked here with
        the function scikit-learn's ``_validate_params`` calls: the same
        ``InvalidParameterError`` (a ``ValueError``) naming the parameter and what it accepts.
        """
        constraints = self._parameter_constraints
        if names is not None:
            constraints = {name: constraints[name] for name in names}
        validate_parameter_constraints(
            constraints,
            {name: getattr(self, name) for name in constraints},
            caller_name=type(self).__name__,
        )

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

    def _resolve_freeze_epochs(self) -> int:
        """The number of phase-1 epochs: ``freeze_epochs``, with ``"auto"`` resolved.

        Phase 1 protects *pretrained* features from the gradients of the new, random layers;
        a random CNN has nothing to protect, and freezing it trains the head on random
        features (the whole fit, with few epochs). So ``"auto"`` freezes
        :data:`AUTO_FREEZE_EPOCHS` epochs exactly when ``weights`` names pretrained weights
        (``"imagenet"``, a path, any other weights name), and none with ``weights=None``,
        also for a module passed as ``backbone``: it counts as pretrained only when the user
        says so (a weights path, or an explicit ``freeze_epochs``), because wrongly freezing
        a random module costs epochs of training on random features, whereas wrongly
        fine-tuning a pretrained one from the first epoch is ordinary fine-tuning at a small
        learning rate.
        """
        if isinstance(self.freeze_epochs, str):  # "auto" (validated)
            return AUTO_FREEZE_EPOCHS if self.weights is not None else 0
        return int(self.freeze_epochs)

    def _resolve_class_weight(self, codes: np.ndarray) -> np.ndarray:
        """Loss weight of each class of ``classes_`` from ``class_weight`` and the tile codes.

        scikit-learn's :func:`~sklearn.utils.class_weight.compute_class_weight`, with clearer
        errors for a dict key that is not a class; ``"balanced"`` with a class absent from
        the training labels (possible with ``classes=``) balances the classes present.
        """
        classes = self.classes_
        class_weight = self.class_weight
        if class_weight is None:
            return np.ones(len(classes), dtype=np.float64)
        if isinstance(class_weight, Mapping):
            known = set(classes.tolist())
            unknown = [key for key in class_weight if key not in known]
            if unknown:
                raise ValueError(
                    f"class_weight has keys that are not classes: {unknown}; the classes are "
                    f"{classes.tolist()}."
                )
            values = np.asarray(list(class_weight.values()), dtype=np.float64)
            if not (np.isfinite(values).all() and (values >= 0).all()):
                raise ValueError(
                    f"class_weight values must be finite and >= 0, got {class_weight}."
                )
        else:  # "balanced"
            counts = np.bincount(codes, minlength=len(classes))
            if not counts.all():
                # A class fixed by `classes=` but absent from these tiles (a subtype whose
                # patients are all in the test set): balanced over the classes present, weight
                # 1 for the absent ones, which has no effect, since no tile carries their label.
                present = counts > 0
                weights = np.ones(len(classes), dtype=np.float64)
                weights[present] = len(codes) / (present.sum() * counts[present])
                return weights
        # Classes missing from a dict weigh 1, as in scikit-learn.
        return compute_class_weight(class_weight, classes=classes, y=classes[codes])

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickled before these were parameters / fitted attributes.
        state.setdefault("negative_class", None)
        state.setdefault("negative_classes", None)
        state.setdefault("class_weight", None)
        state.setdefault("stain_jitter", 0.05)
        if "tile_shape_" in state and "freeze_epochs_" not in state:
            state["freeze_epochs_"] = state.get("freeze_epochs", 0)
        if "classes_inferred_" in state and "class_weight_" not in state:
            classes = state.get("classes")
            n_classes = len(state["classes_inferred_"] if classes is None else classes)
            state["class_weight_"] = np.ones(n_classes, dtype=np.float64)
        super().__setstate__(state)

    def initialize(self) -> TileNetClassifier:
        if not hasattr(self, "tile_shape_"):
            raise ValueError(
                f"{type(self).__name__} builds its module from the data; call fit(X, y)."
            )
        return super().initialize()

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
        if self.class_weight is not None:
            if criterion_cls is None or not issubclass(
                criterion_cls, (nn.CrossEntropyLoss, nn.NLLLoss)
            ):
                raise ValueError(
                    "class_weight needs a criterion class taking weight=, such as "
                    f"torch.nn.CrossEntropyLoss (the default); got {self.criterion!r}."
                )
            if "weight" in kwargs:
                raise ValueError("Give class_weight or criterion__weight, not both.")
            # A buffer of the loss: skorch moves the criterion, hence it, to the device.
            kwargs["weight"] = torch.as_tensor(self.class_weight_, dtype=torch.float32)
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
            ("train_acc", BatchAccuracy(name="train_acc", on_train=True)),
            ("freeze_backbone", FreezeBackbone()),  # reads the net's freeze_epochs_
            ("feature_cache", FeatureCache()),  # after freeze_backbone: reads its decision
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

        Inside ``fit`` a batch is ``{"images", "index"}`` (its rows in the training data):
        during phase 1 the :class:`FeatureCache` callback then has the frozen CNN's pooled
        features of those rows, and the backbone pass is skipped.
        """
        cached = None
        if isinstance(x, Mapping):
            cache = dict(self.callbacks_).get("feature_cache")
            cached = cache.lookup(x["index"]) if isinstance(cache, FeatureCache) else None
            x = x["images"]
        x = to_tensor(x, device=None)
        x = x.to(self.device_, non_blocking=True)
        with autocast(self.device_, self.precision):
            if cached is None:
                return self.module_(x).float()
            return self.module_(x, cnn_pooled=cached).float()

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        augmentations = resolve_augment(self.augment)
        if augmentations:
            # New views every batch: no cached features apply, the row index is not needed.
            # Per sample, on the device, from torch's global RNG (seeded from random_state).
            images = Xi["images"] if isinstance(Xi, Mapping) else Xi
            Xi = to_tensor(images, device=self.device_)
            if "dihedral" in augmentations:
                Xi = random_dihedral(Xi)
            if "stain" in augmentations:
                jitter = float(self.stain_jitter)
                Xi = random_stain_jitter(Xi, sigma_scale=jitter, sigma_shift=jitter)
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

    def _fit(
        self, X: Any, y: Any, groups: Any, *, keep_state: bool, epochs: int | None = None
    ) -> TileNetClassifier:
        # epochs: how many to run (None: max_epochs); resume_fit runs the ones a checkpoint left.
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
            # From all tiles given to fit, validation rows included, as scikit-learn's
            # estimators with an internal validation split do: the same weighted loss then
            # scores the validation rows (the best epoch is the best balanced one), and the
            # weights do not depend on train_split. The group split is stratified, so both
            # parts have nearly the class shares of the whole. A resumed fit keeps them
            # (its criterion is not rebuilt).
            self.class_weight_ = self._resolve_class_weight(codes)
        # Every fit (a resumed one too) resolves it: FreezeBackbone reads it each epoch.
        self.freeze_epochs_ = self._resolve_freeze_epochs()
        with self._concrete_device():
            self.precision_ = resolve_precision(self.precision, self.device_)
            seed = None if continuing else self._fit_seed_
            with seeded_torch(seed, self.device_):
                if not continuing:
                    self.initialize()
                dataset = self.get_dataset(data.tiles, codes)
                if isinstance(dataset, ArrayDataset):
                    # Batches carry their row index, for the FeatureCache callback.
                    dataset.with_index = True
                NeuralNet.partial_fit(self, dataset, codes, groups=data.groups, epochs=epochs)
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
        self._check_params(["aggregation"])  # may be set after fit: the network is the same
        tiles, n_tiles = prepare_predict_tiles(X)
        proba = self._tile_proba(tiles)
        if n_tiles is None:
            return proba
        negative_index: Any = 0
        if self.aggregation == "mil":
            negatives = resolve_negative_classes(
                self.classes_, self.negative_classes, negative_class=self.negative_class
            )
            negative_index = [int(np.flatnonzero(self.classes_ == c)[0]) for c in negatives]
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
