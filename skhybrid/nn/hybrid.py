"""The paper's hybrid model: a CNN branch and an LSTM branch fused by attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import WeightsLike
from .base import BackboneModel
from .fusion import build_fusion
from .normalize import to_unit_float
from .stain import STAIN_MAPS, one_channel_map

__all__ = ["RNN_INPUTS", "HybridCNNLSTM"]

RNN_INPUTS = ("image", "cnn_map")


def _pair(value: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


class HybridCNNLSTM(BackboneModel):
    """Hybrid CNN-LSTM tile classifier with attention fusion.

    ::

        uint8 tile (B, h, w, 3) ─ /255 ─┬─ ImageNet norm ─ CNN ─ pool ─ f_c ─ W_c ─ u_c ─┐
                                        └─ 1-channel map ─ rows ─ LSTM ─ h_T ─── u_r ────┴─ fusion
                                                                    z ─ dropout ─ FC ─ logits

    The CNN branch pools the backbone's feature map to ``f_c`` (size C) and projects it,
    ``u_c = W_c f_c + b_c`` (size d = ``lstm_hidden_size``). The LSTM branch reads a
    sequence and gives its last hidden state ``u_r = h_T`` (size d). The fusion
    (``"attention"``, as in the paper) is::

        α = softmax_over_branches(W_a [u_c ; u_r] + b_a)    α_c[j] + α_r[j] = 1 for each j
        z = α_c ⊙ u_c + α_r ⊙ u_r

    followed by dropout and a linear layer to ``n_classes`` logits.

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet18"
        Registry name (the paper's ``"vgg19"``, ``"googlenet"``, ``"resnet101"``, or others
        from :func:`~skhybrid.nn.available_backbones`) or a module.
    n_classes : int, default=2
        Number of output logits.
    tile_shape : (height, width), default=(224, 224)
        Size of the input tiles. With ``rnn_input="image"`` and no ``rnn_map_size`` each row
        of ``width`` pixels is one LSTM time step, so the LSTM input size is the tile width.
    weights : "imagenet", None or path, default=None
        Initial backbone weights (see :func:`~skhybrid.nn.build_backbone`).
    lstm_hidden_size : int, default=512
        LSTM hidden units (the paper: 512); also the size ``d`` of the fused vector.
    rnn_input : {"image", "cnn_map"}, default="image"
        What the LSTM reads. ``"image"`` (the paper): a one-channel map of the tile, one image
        row per time step (``h`` steps of ``w`` values). ``"cnn_map"``: the backbone's feature
        map as a sequence of its ``h' * w'`` positions in row-major order, each a
        C-dimensional vector (the CNN-then-LSTM stacking of related work).
    rnn_map : {"hematoxylin", "luminance"}, default="hematoxylin"
        The one-channel map for ``rnn_input="image"``. Hematoxylin optical density
        (colour deconvolution) highlights nuclei, the structures whose size, density and
        shape differ between benign and malignant tissue, and ignores eosin-stained stroma
        and background; luminance is the plain grey-level view. See
        :mod:`skhybrid.nn.stain`.
    rnn_map_size : int or (rows, cols), optional
        Average-pool the map to this size before the LSTM: fewer, shorter steps (224 rows of
        224 px cost 224 sequential LSTM steps) and any tile size at prediction.
    fusion : {"attention", "concat", "sum", "product"}, default="attention"
        How the two branches are combined (see :mod:`skhybrid.nn.fusion`).
    dropout : float, default=0.5
        Dropout probability before the linear head.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "resnet18",
        n_classes: int = 2,
        tile_shape: tuple[int, int] = (224, 224),
        *,
        weights: WeightsLike = None,
        lstm_hidden_size: int = 512,
        rnn_input: str = "image",
        rnn_map: str = "hematoxylin",
        rnn_map_size: int | tuple[int, int] | None = None,
        fusion: str = "attention",
        dropout: float = 0.5,
    ) -> None:
        if rnn_input not in RNN_INPUTS:
            raise ValueError(f"Unknown rnn_input {rnn_input!r}; valid are {list(RNN_INPUTS)}.")
        if rnn_map not in STAIN_MAPS:
            raise ValueError(f"Unknown rnn_map {rnn_map!r}; valid are {sorted(STAIN_MAPS)}.")
        tile_shape = (int(tile_shape[0]), int(tile_shape[1]))
        super().__init__(backbone, weights, tile_shape)
        self.tile_shape = tile_shape
        self.rnn_input = rnn_input
        self.rnn_map = rnn_map
        self.rnn_map_size = _pair(rnn_map_size)
        channels = self.backbone.out_channels
        # "image": one map row (width pixels) per step; "cnn_map": one C-vector per position.
        lstm_input = (self.rnn_map_size or tile_shape)[1] if rnn_input == "image" else channels
        self.lstm = nn.LSTM(lstm_input, lstm_hidden_size, batch_first=True)
        self.cnn_proj = nn.Linear(channels, lstm_hidden_size)
        self.fusion = build_fusion(fusion, lstm_hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.fusion.out_features, n_classes)

    def rnn_sequence(self, x: torch.Tensor, fmap: torch.Tensor | None) -> torch.Tensor:
        """The LSTM's input ``(B, steps, features)`` from ``[0, 1]`` RGB and the CNN map."""
        if self.rnn_input == "cnn_map":
            assert fmap is not None
            return fmap.flatten(2).transpose(1, 2).contiguous()
        channel = one_channel_map(x, self.rnn_map)
        if self.rnn_map_size is not None:
            channel = F.adaptive_avg_pool2d(channel, self.rnn_map_size)
        elif channel.shape[-1] != self.lstm.input_size:
            raise ValueError(
                f"The LSTM reads rows of {self.lstm.input_size} pixels (tile_shape "
                f"{self.tile_shape}) but got tiles of width {channel.shape[-1]}; resize the "
                "tiles, or set rnn_map_size to pool every map to a fixed size."
            )
        return channel[:, 0].contiguous()

    @property
    def accepts_cached_features(self) -> bool:  # type: ignore[override]
        # "cnn_map" feeds the whole feature map to the LSTM: pooled features are not enough.
        return self.rnn_input == "image"

    def forward(self, images: torch.Tensor, cnn_pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, k)`` of uint8 tiles ``(B, h, w, 3)``.

        ``cnn_pooled`` (B, C), the pooled features of a frozen backbone computed beforehand,
        replaces the backbone pass (``rnn_input="image"`` only); the LSTM still reads the tiles.
        """
        if cnn_pooled is None:
            x, fmap = self.cnn_features(images)
            pooled = self.pool(fmap)
        else:
            if not self.accepts_cached_features:
                raise ValueError("rnn_input='cnn_map' needs the feature map, not pooled features.")
            x, fmap, pooled = to_unit_float(images), None, cnn_pooled
        u_c = self.cnn_proj(pooled)
        sequence = self.rnn_sequence(x, fmap)
        if sequence.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # oneDNN has no bf16 LSTM on CPUs without AVX-512 ("could not create a primitive
            # descriptor for the LSTM forward propagation primitive"); the LSTM is a small
            # share of the work, so under CPU autocast it runs in fp32 on every CPU.
            with torch.autocast("cpu", enabled=False):
                _, (h_n, _) = self.lstm(sequence.float())
        else:
            _, (h_n, _) = self.lstm(sequence)
        z = self.fusion(u_c, h_n[-1])
        return self.fc(self.dropout(z))
