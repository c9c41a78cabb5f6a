"""One-channel maps of an RGB tile for the LSTM branch: hematoxylin density or luminance.

The hybrid model's LSTM reads a tile row by row from a single channel. Two maps are offered:

``"hematoxylin"`` (default)
    The hematoxylin concentration from colour deconvolution (Ruifrok & Johnston, 2001),
    exactly ``skimage.color.rgb2hed(image)[..., 0]``: the optical density
    ``OD = log(max(rgb, 1e-6)) / log(1e-6)`` (Beer-Lambert: linear in the amount of stain;
    0 for white, 1 for black) projected onto the hematoxylin column of the inverse H&E-DAB
    stain matrix, clipped at 0: about 0.1 to 0.2 on stained nuclei, 1.2 on black.
    Hematoxylin stains nuclei, and nuclear size, density and shape are what
    separate malignant from benign tissue, while eosin-stained stroma and white background
    map to about 0. Grey levels mix both stains into one intensity.
``"luminance"``
    ITU-R BT.601 luma, ``0.299 R + 0.587 G + 0.114 B``, inverted (``1 - Y``) so that empty
    background is 0 and dense tissue is high; the plain grey-level view.
"""

from __future__ import annotations

import math

import torch

from ..stain_maths import HED_FROM_RGB, LUMA, OD_FLOOR

__all__ = ["STAIN_MAPS", "hematoxylin_map", "luminance_map", "one_channel_map"]

# The hematoxylin column of the inverse stain matrix divided by log(1e-6): the optical density's
# scale folded into the weights, so that the map is one log, one multiply and one sum.
_HEMATOXYLIN = torch.tensor(HED_FROM_RGB[:, 0] / math.log(OD_FLOOR), dtype=torch.float32)
_LUMA = torch.tensor(LUMA, dtype=torch.float32)


def hematoxylin_map(x: torch.Tensor) -> torch.Tensor:
    """Hematoxylin concentration ``(B, 1, h, w)`` of ``[0, 1]`` RGB ``(B, 3, h, w)``.

    ``max(OD @ HED_FROM_RGB[:, 0], 0)`` with ``OD = log(max(x, 1e-6)) / log(1e-6)``, the
    constants of :mod:`skhybrid.stain_maths`: equal to ``skimage.color.rgb2hed`` of the same
    pixels (channel 0) and to :func:`skhybrid.features.hed_optical_density` (channel 0) to
    float32 rounding.
    """
    log_rgb = torch.log(x.clamp(min=OD_FLOOR))
    weights = _HEMATOXYLIN.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (log_rgb * weights).sum(dim=1, keepdim=True).clamp_(min=0.0)


def luminance_map(x: torch.Tensor) -> torch.Tensor:
    """Inverted luma ``1 - Y`` ``(B, 1, h, w)`` of ``[0, 1]`` RGB ``(B, 3, h, w)``."""
    weights = _LUMA.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return 1.0 - (x * weights).sum(dim=1, keepdim=True)


STAIN_MAPS = {"hematoxylin": hematoxylin_map, "luminance": luminance_map}

#: Factor from each map to the LSTM's input. scikit-image divides the optical density by
#: ``-ln(1e-6) = 13.8`` (so black is 1); the LSTM reads hematoxylin in natural optical-density
#: units (absorbance in nepers, ``-ln(transmission)``: about 1.5 to 3 on nuclei), the scale the
#: model was tuned on: at skimage's scale (0.1 to 0.2 on nuclei) the LSTM's signal is 14 times
#: weaker and a 3-epoch hybrid fit no longer learned (measured: image accuracy 0.33 vs > 0.6).
LSTM_MAP_SCALE = {"hematoxylin": -math.log(OD_FLOOR), "luminance": 1.0}


def one_channel_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The LSTM's input map by name: ``STAIN_MAPS[kind](x) * LSTM_MAP_SCALE[kind]``."""
    try:
        return STAIN_MAPS[kind](x) * LSTM_MAP_SCALE[kind]
    except KeyError:
        raise ValueError(f"Unknown map {kind!r}; valid maps are {sorted(STAIN_MAPS)}.") from None
