"""The public tile classifiers: the paper's hybrid CNN-LSTM and the plain CNN baseline."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..nn import CNN, FUSIONS, RNN_INPUTS, STAIN_MAPS, HybridCNNLSTM
from ._base import TileNetClassifier

__all__ = ["CNNClassifier", "HybridCNNLSTMClassifier"]

_COMMON_PARAMETERS = """
    freeze_epochs : int or "auto", default="auto"
        Phase 1 of the paper's transfer learning: epochs with the CNN frozen (its weights
        *and* BatchNorm statistics), training only the new layers; afterwards everything is
        fine-tuned. ``"auto"``: 10 epochs when the CNN starts from pretrained weights
        (``weights`` not None), 0 with ``weights=None`` (a random CNN has no features to
        protect; a module passed as ``backbone`` counts as pretrained only with a weights
        path, otherwise give the number). An int is always honoured (0 fine-tunes from the
        first epoch); the paper does not give it. The number used is ``freeze_epochs_``.
    max_epochs : int, default=100
        Total epochs of both phases (paper: 100).
    lr : float, default=1e-4
        Adam learning rate (paper: Adam, 1e-4).
    batch_size : int, default=128
        Tiles per batch (paper: 128).
    lr_decay : float, default=0.99
        Learning-rate decay per epoch, ``ExponentialLR(gamma=lr_decay)`` (paper: 0.99).
    label_smoothing : float, default=0.1
        Label smoothing of the cross-entropy loss (paper: label smoothing; 0.1 is the usual
        value).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn: ``None`` weighs all classes
        1; ``"balanced"`` weighs class ``c`` ``n_tiles / (n_classes * n_tiles_of_c)``
        (:func:`~sklearn.utils.class_weight.compute_class_weight`), computed on the tile
        labels given to ``fit`` (validation rows included); ``{label: weight}`` sets them
        (missing classes weigh 1). Passed as ``CrossEntropyLoss(weight=...)``, with
        ``label_smoothing``; the weights used are ``class_weight_``. On imbalanced data
        (BreakHis is ~70 % malignant) ``"balanced"`` keeps the minority class from being
        under-predicted; the command line uses it by default.
    dropout : float, default=0.5
        Dropout before the final linear layer (paper: dropout).
    aggregation : {"mean", "max", "vote", "mil"}, default="mean"
        How ``predict_proba`` turns the tile probabilities of a bag into image
        probabilities: the mean of the tile distributions; the per-class maximum over tiles
        renormalised to sum to 1; the fraction of tiles voting for each class (majority
        vote, ties to the first class of ``classes_``); or the multiple-instance rule, an
        image is positive as soon as one tile is (``P(negative) = min_t p_t(negative)``;
        the natural choice after self-learning, see :func:`aggregate_proba`). Rows always
        sum to 1.
    negative_class : label, default=None
        The negative class of ``aggregation="mil"`` (e.g. ``"benign"``). ``None`` infers it
        with :func:`skhybrid.class_roles.resolve_class_roles` (``"benign"``/``"normal"``/
        ``"B"``, else the smallest numeric class), else an error asks for it; the same
        parameter as :class:`~skhybrid.self_learning.SelfLearningRelabeler`'s. Not used by
        the other aggregations.
    negative_classes : collection of labels, default=None
        The negative SET of ``aggregation="mil"`` with k classes: the benign subtypes, all
        benign tissue (:func:`skhybrid.class_roles.resolve_negative_classes`; BreakHis subtype
        names are recognised, integer subtype codes need ``negative_classes=[0, 1, 2, 3]``). An
        image is then benign only as far as its least benign tile is. The relabeler's
        parameter of the same name.
    augment : bool, {"dihedral", "stain"} or list of them, default=False
        Random augmentation of the training batches, per tile, on the device, seeded by
        ``random_state``; not used in the paper. ``"dihedral"`` (or ``True``): flips and
        90-degree rotations (non-square tiles get flips only). ``"stain"``: HED stain jitter,
        each tile's hematoxylin and eosin amounts scaled and shifted at random
        (:func:`skhybrid.nn.stain_augment.random_stain_jitter`; ranges ``stain_jitter``), for
        robustness to other labs' staining (see ``docs/stain.md``). A list such as
        ``["dihedral", "stain"]`` applies both (in that order, whatever the list's order).
        ``False`` (or ``[]``): none.
    stain_jitter : float in [0, 1], default=0.05
        Half-width of both ranges of ``augment="stain"``: hematoxylin and eosin
        concentrations are scaled by ``U(1 - stain_jitter, 1 + stain_jitter)`` and shifted by
        ``U(-stain_jitter, stain_jitter)`` optical density. 0.05 is Tellez et al.'s
        "HED-light" setting, 0.2 their strong one. Not used without ``"stain"``.
    cache_features : bool, default=True
        Phase 1 with the CNN frozen: compute the CNN's pooled features of the training tiles
        once and reuse them every frozen epoch instead of running the backbone again (exact,
        since a frozen backbone is deterministic; several times faster per epoch). Needs
        ``n_tiles x C`` floats on the device during phase 1 only (17955 tiles of ResNet101:
        147 MB). Not used with any ``augment`` (every epoch sees new views) nor with
        ``rnn_input="cnn_map"`` (the LSTM reads the whole feature map).
    patience : int or None, default=None
        Stop when the validation loss has not improved for this many epochs. ``None`` trains
        all ``max_epochs`` (as the paper). Either way the weights of the epoch with the
        lowest validation loss are restored at the end (paper: best epoch kept), in memory.
    valid_size : float or None, default=0.2
        Share of the images held out for the validation loss; the split is by group (tiles
        of one image, or the given ``groups``, never on both sides) and stratified. ``None``
        trains on everything and keeps the last epoch.
    device : {"auto", "cpu", "cuda", ...}, default="auto"
        ``"auto"`` uses CUDA when available; the resolved device is ``device_``. A model
        trained on a GPU unpickles on a CPU-only machine.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, the validation split, shuffling, dropout and
        augmentation: the same seed gives the same model on the CPU.
    verbose : int, default=1
        0: silent; 1: an epoch table (loss, accuracy, phase, duration); 2: also a progress
        bar per epoch.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"bf16"`` runs forward passes under bfloat16 autocast (weights stay fp32);
        ``"auto"`` uses bf16 where the device computes it natively (CPUs with AVX-512 BF16 or
        AMX, CUDA GPUs from Ampere on: 2-3x faster, probabilities within ~2e-3 of fp32) and
        fp32 elsewhere. The precision used is ``precision_``.
    module, criterion, optimizer, train_split, classes, **kwargs
        skorch parameters. ``module`` is the network class, built from the parameters above
        (extra constructor arguments as ``module__name=value``); ``criterion`` defaults to
        ``CrossEntropyLoss`` (with ``label_smoothing``); ``optimizer`` to Adam;
        ``train_split="auto"`` is the group-aware split of ``valid_size`` (any skorch
        ``train_split`` callable, or ``None``, replaces it); ``classes`` fixes the label set.
        Other skorch parameters (``callbacks``, ``iterator_train__num_workers``,
        ``warm_start``, ...) pass through.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; ``predict`` returns values from it.
    module_ : torch.nn.Module
        The trained network.
    tile_shape_ : tuple of int
        ``(h, w)`` of the training tiles.
    device_ : str
        The device the model lives on.
    freeze_epochs_ : int
        Epochs with the CNN frozen: ``freeze_epochs`` with ``"auto"`` resolved.
    class_weight_ : ndarray of shape (n_classes,)
        Loss weight of each class, in the order of ``classes_`` (ones with
        ``class_weight=None``).
    precision_ : str
        ``"fp32"`` or ``"bf16"``: what ``precision`` resolved to at fit time.
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss``, ``valid_acc``, ``backbone_frozen``, ...

    Notes
    -----
    ``fit`` takes images/tiles ``(n, H, W, 3)`` uint8 with one label each, or bags
    ``(n, T, h, w, 3)`` from :class:`~skhybrid.tiling.SubImageTiler` with one label per image
    (inherited by its tiles) or per tile ``(n, T)``. Training is always on tiles; the image
    index (or ``groups``) keeps the validation split group-aware. Images stay uint8 until the
    batch is on the device, where the network normalises it with the ImageNet mean and std.
"""

_SHARED_DEFAULTS: dict[str, Any] = {
    "criterion": torch.nn.CrossEntropyLoss,
    "optimizer": torch.optim.Adam,
}


class CNNClassifier(TileNetClassifier):
    __doc__ = (
        """Plain CNN tile classifier (backbone, global pooling, dropout, FC) with skorch.

    The CNN-only baseline of the paper, trained exactly like the hybrid model.

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet101"
        ``"vgg19"``, ``"googlenet"``, ``"resnet101"`` (the paper's three), another name from
        :func:`skhybrid.nn.available_backbones`, or a module mapping ``(B, 3, H, W)`` to
        feature maps (copied at fit, never changed).
    weights : "imagenet", None or path, default="imagenet"
        Initial CNN weights: torchvision's ImageNet weights (paper; read from torch's cache,
        a clear error names the file to fetch when offline), ``None`` for training from
        scratch, or a path to a state dict."""
        + _COMMON_PARAMETERS
    )

    def __init__(
        self,
        backbone: str | nn.Module = "resnet101",
        *,
        weights: Any = "imagenet",
        freeze_epochs: int | str = "auto",
        max_epochs: int = 100,
        lr: float = 1e-4,
        batch_size: int = 128,
        lr_decay: float = 0.99,
        label_smoothing: float = 0.1,
        class_weight: Any = None,
        dropout: float = 0.5,
        aggregation: str = "mean",
        negative_class: Any = None,
        negative_classes: Any = None,
        augment: bool | str | list[str] = False,
        stain_jitter: float = 0.05,
        cache_features: bool = True,
        patience: int | None = None,
        valid_size: float | None = 0.2,
        device: Any = "auto",
        random_state: Any = None,
        verbose: int = 1,
        precision: str = "auto",
        module: Any = CNN,
        criterion: Any = _SHARED_DEFAULTS["criterion"],
        optimizer: Any = _SHARED_DEFAULTS["optimizer"],
        train_split: Any = "auto",
        classes: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            backbone=backbone,
            weights=weights,
            freeze_epochs=freeze_epochs,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            lr_decay=lr_decay,
            label_smoothing=label_smoothing,
            class_weight=class_weight,
            dropout=dropout,
            aggregation=aggregation,
            negative_class=negative_class,
            negative_classes=negative_classes,
            augment=augment,
            stain_jitter=stain_jitter,
            cache_features=cache_features,
            patience=patience,
            valid_size=valid_size,
            device=device,
            random_state=random_state,
            verbose=verbose,
            precision=precision,
            criterion=criterion,
            optimizer=optimizer,
            train_split=train_split,
            classes=classes,
            **kwargs,
        )


class HybridCNNLSTMClassifier(TileNetClassifier):
    __doc__ = (
        """The paper's hybrid CNN-LSTM tile classifier with attention fusion, with skorch.

    A pretrained CNN branch and an LSTM branch (512 hidden units) reading a one-channel map
    of the tile row by row; their features are fused by attention with element-wise
    multiplication, ``z = a_c * u_c + a_r * u_r`` with ``(a_c, a_r) = softmax(W_a [u_c; u_r] + b_a)``
    over the two branches for every feature, then dropout, FC and softmax (see
    :class:`skhybrid.nn.HybridCNNLSTM`).

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet101"
        CNN branch: ``"vgg19"``, ``"googlenet"``, ``"resnet101"`` (the paper's three), another
        name from :func:`skhybrid.nn.available_backbones`, or a module (copied at fit).
    weights : "imagenet", None or path, default="imagenet"
        Initial CNN weights: torchvision's ImageNet weights (paper), ``None`` for training
        from scratch, or a path to a state dict.
    lstm_hidden_size : int, default=512
        LSTM hidden units (paper: 512); also the size of the fused feature vector.
    rnn_input : {"image", "cnn_map"}, default="image"
        ``"image"``: the LSTM reads the tile's one-channel map, one row per time step
        (paper). ``"cnn_map"``: it reads the CNN's feature map as a sequence of positions
        (the common CNN-then-LSTM of related work).
    rnn_map : {"hematoxylin", "luminance"}, default="hematoxylin"
        The one-channel map: hematoxylin optical density (nuclei, where benign and
        malignant tissue differ) or inverted luminance. See :mod:`skhybrid.nn.stain`.
    rnn_map_size : int, (rows, cols) or None, default=None
        Pool the map to this size before the LSTM (faster; any tile size at prediction).
        ``None``: full resolution, ``h`` steps of ``w`` pixels (paper: 224 x 224).
    fusion : {"attention", "concat", "sum", "product"}, default="attention"
        ``"attention"`` as in the paper; the others for ablations."""
        + _COMMON_PARAMETERS
    )

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **TileNetClassifier._parameter_constraints,
        "lstm_hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "rnn_input": [StrOptions(set(RNN_INPUTS))],
        "rnn_map": [StrOptions(set(STAIN_MAPS))],
        "rnn_map_size": [Interval(numbers.Integral, 1, None, closed="left"), tuple, list, None],
        "fusion": [StrOptions(set(FUSIONS))],
    }

    def __init__(
        self,
        backbone: str | nn.Module = "resnet101",
        *,
        weights: Any = "imagenet",
        lstm_hidden_size: int = 512,
        rnn_input: str = "image",
        rnn_map: str = "hematoxylin",
        rnn_map_size: int | tuple[int, int] | None = None,
        fusion: str = "attention",
        freeze_epochs: int | str = "auto",
        max_epochs: int = 100,
        lr: float = 1e-4,
        batch_size: int = 128,
        lr_decay: float = 0.99,
        label_smoothing: float = 0.1,
        class_weight: Any = None,
        dropout: float = 0.5,
        aggregation: str = "mean",
        negative_class: Any = None,
        negative_classes: Any = None,
        augment: bool | str | list[str] = False,
        stain_jitter: float = 0.05,
        cache_features: bool = True,
        patience: int | None = None,
        valid_size: float | None = 0.2,
        device: Any = "auto",
        random_state: Any = None,
        verbose: int = 1,
        precision: str = "auto",
        module: Any = HybridCNNLSTM,
        criterion: Any = _SHARED_DEFAULTS["criterion"],
        optimizer: Any = _SHARED_DEFAULTS["optimizer"],
        train_split: Any = "auto",
        classes: Any = None,
        **kwargs: Any,
    ) -> None:
        self.lstm_hidden_size = lstm_hidden_size
        self.rnn_input = rnn_input
        self.rnn_map = rnn_map
        self.rnn_map_size = rnn_map_size
        self.fusion = fusion
        super().__init__(
            module,
            backbone=backbone,
            weights=weights,
            freeze_epochs=freeze_epochs,
            max_epochs=max_epochs,
            lr=lr,
            batch_size=batch_size,
            lr_decay=lr_decay,
            label_smoothing=label_smoothing,
            class_weight=class_weight,
            dropout=dropout,
            aggregation=aggregation,
            negative_class=negative_class,
            negative_classes=negative_classes,
            augment=augment,
            stain_jitter=stain_jitter,
            cache_features=cache_features,
            patience=patience,
            valid_size=valid_size,
            device=device,
            random_state=random_state,
            verbose=verbose,
            precision=precision,
            criterion=criterion,
            optimizer=optimizer,
            train_split=train_split,
            classes=classes,
            **kwargs,
        )

    def _module_kwargs(self) -> dict[str, Any]:
        return {
            **super()._module_kwargs(),
            "lstm_hidden_size": self.lstm_hidden_size,
            "rnn_input": self.rnn_input,
            "rnn_map": self.rnn_map,
            "rnn_map_size": self.rnn_map_size,
            "fusion": self.fusion,
        }
