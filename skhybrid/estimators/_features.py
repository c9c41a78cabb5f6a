"""Frozen CNN features for any scikit-learn classifier (the CNN+SVM / logistic baselines)."""

from __future__ import annotations

import copy
import io
import numbers
import warnings
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..nn import BackboneModel
from ..tiling import unflatten_tiles
from ._base import BACKBONE_CONSTRAINT, WEIGHTS_CONSTRAINT
from ._data import pooled_features_into, prepare_predict_tiles
from ._runtime import PRECISIONS, resolve_device

__all__ = ["CNNFeatureExtractor"]


class _PooledFeatures(BackboneModel):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pooled_features(images)


class CNNFeatureExtractor(TransformerMixin, BaseEstimator):
    """Globally pooled features of a frozen CNN: images ``(n, d)``, bags ``(n, T, d)``.

    Put any scikit-learn classifier after it for the classic transfer-learning baselines
    (ImageNet CNN features + SVM or logistic regression)::

        make_pipeline(CNNFeatureExtractor("resnet101"), StandardScaler(), LogisticRegression())

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet101"
        A name from :func:`skhybrid.nn.available_backbones` (the paper's ``"vgg19"``,
        ``"googlenet"``, ``"resnet101"``, ...) or a module (copied at fit).
    weights : "imagenet", None or path, default="imagenet"
        ImageNet weights (read from torch's cache; a clear error names the file to fetch when
        offline), ``None`` (random features, a sanity baseline) or a state dict path.
    batch_size : int, default=128
        Images per forward pass.
    device : {"auto", "cpu", "cuda", ...}, default="auto"
        ``"auto"`` uses CUDA when available.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"bf16"`` computes under bfloat16 autocast; ``"auto"`` does so where the device
        computes bf16 natively (see :class:`CNNClassifier`). Features are float32 either way.

    Attributes
    ----------
    n_features_out_ : int
        Feature size ``d`` (the backbone's channels).
    module_ : torch.nn.Module
        The frozen network, in eval mode.
    device_ : str
        The device it runs on.
    tile_shape_ : tuple of int
        ``(h, w)`` of the images seen in ``fit`` (other sizes work too).

    Notes
    -----
    ``fit`` learns nothing from the data (the CNN is frozen); it builds the network and
    checks the input. A fitted extractor pickles its weights as CPU tensors, so one fitted on
    a GPU loads on a CPU-only machine.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "backbone": BACKBONE_CONSTRAINT,
        "weights": WEIGHTS_CONSTRAINT,
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
    }

    def __init__(
        self,
        backbone: str | nn.Module = "resnet101",
        *,
        weights: Any = "imagenet",
        batch_size: int = 128,
        device: Any = "auto",
        precision: str = "auto",
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.batch_size = batch_size
        self.device = device
        self.precision = precision

    def _build(self, weights: Any, tile_shape: tuple[int, int]) -> nn.Module:
        backbone = self.backbone
        if isinstance(backbone, nn.Module):
            backbone = copy.deepcopy(backbone)
        module = _PooledFeatures(backbone, weights, tile_shape)
        module.freeze_backbone(True)
        return module.eval()

    def fit(self, X: Any, y: Any = None) -> CNNFeatureExtractor:
        """Build the frozen network and check ``X`` (images/tiles or bags, uint8)."""
        self._validate_params()
        tiles, _ = prepare_predict_tiles(X)
        self.device_ = resolve_device(self.device)
        self.tile_shape_ = (int(tiles.shape[1]), int(tiles.shape[2]))
        self.module_ = self._build(self.weights, self.tile_shape_).to(self.device_)
        self.n_features_out_ = self.module_.backbone.out_channels
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features ``(n, d)`` of images/tiles, or ``(n, T, d)`` of bags, as float32."""
        check_is_fitted(self, "module_")
        tiles, n_tiles = prepare_predict_tiles(X)
        out = torch.empty((len(tiles), self.n_features_out_), dtype=torch.float32)
        pooled_features_into(
            out,
            self.module_,
            tiles,
            batch_size=self.batch_size,
            device=self.device_,
            precision=self.precision,
        )
        features = out.numpy()
        return features if n_tiles is None else unflatten_tiles(features, n_tiles)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``cnn0 ... cnn{d-1}`` (for image input, where the output is 2-D)."""
        check_is_fitted(self, "module_")
        return np.asarray([f"cnn{i}" for i in range(self.n_features_out_)], dtype=object)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # object.__getstate__ may return __dict__ itself
        if "module_" in state:
            # The weights travel as torch.save bytes so that loading can map them to another
            # device (a GPU-fitted extractor on a CPU-only machine); the network is rebuilt
            # around them on load.
            module = state.pop("module_")
            buffer = io.BytesIO()
            torch.save(module.state_dict(), buffer)
            state["_module_state_"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        module_state = state.pop("_module_state_", None)
        super().__setstate__(state)
        if module_state is None:
            return
        device = resolve_device(self.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(
                f"CNNFeatureExtractor was fitted on {device!r}, which is not available here; "
                "it runs on the CPU (set_params(device='cpu') to silence this).",
                UserWarning,
                stacklevel=2,
            )
            device = "cpu"
        self.device_ = device
        weights = torch.load(io.BytesIO(module_state), map_location=device, weights_only=True)
        # weights=None: the saved state replaces the initial weights, no file needed.
        module = self._build(None, self.tile_shape_)
        module.load_state_dict(weights)
        self.module_ = module.to(device)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        return tags
