"""One-channel maps of an RGB tile for the LSTM branch: hematoxylin density or luminance.

The hybrid model's LSTM reads a tile row by row from a single channel. Two maps are offered:

``"hematoxylin"`` (default)
    The hematoxylin concentration from colour deconvolution (Ruifrok & Johnston, 2001):
    optical density ``OD = -log((I * 255 + 1) / 256)`` (Beer-Lambert: linear in the amount
    of stain) projected onto the hematoxylin column of the inverse H&E-DAB stain matrix,
    clipped at 0. Hematoxylin stains nuclei, and nuclear size, density and shape are what
    separate malignant from benign tissue, while eosin-stained stroma and white background
    map to about 0. Grey levels mix both stains into one intensity.
``"luminance"``
    ITU-R BT.601 luma, ``0.299 R + 0.587 G + 0.114 B``, inverted (``1 - Y``) so that empty
    background is 0 and dense tissue is high; the plain grey-level view.
"""

from __future__ import annotations

import math

import torch

__all__ = ["STAIN_MAPS", "hematoxylin_map", "luminance_map", "one_channel_map"]

# Ruifrok & Johnston's H&E-DAB optical-density vectors (rows: H, E, DAB), as in scikit-image.
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_HEMATOXYLIN = torch.linalg.inv(_RGB_FROM_HED)[:, 0].to(torch.float32)
_LUMA = torch.tensor([0.299, 0.587, 0.114])
_LOG_256 = math.log(256.0)


def hematoxylin_map(x: torch.Tensor) -> torch.Tensor:
    """Hematoxylin density ``(B, 1, h, w)`` of ``[0, 1]`` RGB ``(B, 3, h, w)``."""
    od = _LOG_256 - torch.log1p(x * 255.0)  # -log((I*255 + 1) / 256), 0 for white
    weights = _HEMATOXYLIN.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (od * weights).sum(dim=1, keepdim=True).clamp_(min=0.0)


def luminance_map(x: torch.Tensor) -> torch.Tensor:
    """Inverted luma ``1 - Y`` ``(B, 1, h, w)`` of ``[0, 1]`` RGB ``(B, 3, h, w)``."""
    weights = _LUMA.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return 1.0 - (x * weights).sum(dim=1, keepdim=True)


STAIN_MAPS = {"hematoxylin": hematoxylin_map, "luminance": luminance_map}


def one_channel_map(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Dispatch to :data:`STAIN_MAPS` by name."""
    try:
        return STAIN_MAPS[kind](x)
    except KeyError:
        raise ValueError(f"Unknown map {kind!r}; valid maps are {sorted(STAIN_MAPS)}.") from None
