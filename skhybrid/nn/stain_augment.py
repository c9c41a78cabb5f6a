"""Random H&E stain jitter of image batches ("HED jitter", Tellez et al., 2018), on the device.

A model that sees only one lab's colours learns them; perturbing the amount of each stain
during training makes it robust to another lab's. Each image is unmixed into hematoxylin,
eosin and residual (DAB) concentrations by colour deconvolution (Ruifrok & Johnston, 2001),
its hematoxylin and eosin concentrations are scaled and shifted by random amounts drawn per
image, and it is mixed back to RGB. The residual channel is left as is, so zero jitter returns
the input (up to rounding).

Defaults: scale factors ``U(1 - 0.05, 1 + 0.05)`` and shifts ``U(-0.05, 0.05)`` (optical-density
units, natural log), Tellez et al.'s "HED-light" ranges; their strong setting is 0.2. A shift of
0.05 changes a stained pixel's red channel by about 3 % (7 grey levels at 240). White background
has zero concentration: a positive shift tints it faintly, a negative one saturates at 255.
"""

from __future__ import annotations

import math

import torch

from ..stain_maths import HED_FROM_RGB, RGB_FROM_HED

__all__ = ["random_stain_jitter"]

# The Ruifrok & Johnston matrix of skhybrid.stain_maths (scikit-image's), in float64.
_RGB_FROM_HED = torch.tensor(RGB_FROM_HED, dtype=torch.float64)
_HED_FROM_RGB = torch.tensor(HED_FROM_RGB, dtype=torch.float64)
# Not stain_maths.optical_density: the jitter must map back to RGB exactly (zero jitter is the
# identity), and scikit-image's definition clips concentrations at 0 and floors intensities at
# 1e-6, which cannot be inverted. OD = -log((I * 255 + 1) / 256) is finite for black and 0 for
# white, and invertible.
_LOG_256 = math.log(256.0)


def random_stain_jitter(
    images: torch.Tensor,
    sigma_scale: float = 0.05,
    sigma_shift: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale and shift the hematoxylin and eosin of each image of ``(B, h, w, 3)`` at random.

    For each image ``b`` and stain ``s`` in (H, E), the concentration ``c`` becomes
    ``c * a[b, s] + t[b, s]`` with ``a ~ U(1 - sigma_scale, 1 + sigma_scale)`` and
    ``t ~ U(-sigma_shift, sigma_shift)``; every pixel of an image gets the same ``a`` and ``t``.

    Parameters
    ----------
    images : Tensor of shape (B, h, w, 3)
        RGB, uint8 in [0, 255] or floating point in [0, 1], on any device.
    sigma_scale : float, default=0.05
        Half-width of the multiplicative range (0: no scaling).
    sigma_shift : float, default=0.05
        Half-width of the additive range, in optical-density units (0: no shift).
    generator : torch.Generator, optional
        CPU generator for the random factors; ``None`` uses torch's global RNG, which the
        estimators seed from ``random_state``.

    Returns
    -------
    Tensor of shape (B, h, w, 3)
        A new tensor of the input's dtype and device; uint8 results are rounded, all results
        are clipped to the valid range.

    Examples
    --------
    >>> import torch
    >>> images = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    >>> random_stain_jitter(images, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 8, 8, 3])
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (B, h, w, 3), got {tuple(images.shape)}.")
    if sigma_scale < 0 or sigma_shift < 0:
        raise ValueError(
            f"sigma_scale and sigma_shift must be >= 0, got {sigma_scale} and {sigma_shift}."
        )
    is_uint8 = images.dtype == torch.uint8
    if not (is_uint8 or images.is_floating_point()):
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}.")
    n = images.shape[0]
    # Drawn on the CPU (where the generator lives), then moved: the same seed gives the same
    # factors on every device.
    scale = 1.0 + sigma_scale * (2.0 * torch.rand((n, 2), generator=generator) - 1.0)
    shift = sigma_shift * (2.0 * torch.rand((n, 2), generator=generator) - 1.0)
    # Float32 is enough for 1/255 steps; float64 inputs keep their precision.
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    device = images.device
    ones = torch.ones((n, 1))
    scale = torch.cat([scale, ones], dim=1).to(device=device, dtype=dtype)  # residual: kept
    shift = torch.cat([shift, 0 * ones], dim=1).to(device=device, dtype=dtype)

    rgb255 = images.to(dtype) if is_uint8 else images.to(dtype) * 255.0
    od = _LOG_256 - torch.log1p(rgb255)  # -log((I + 1) / 256)
    hed_from_rgb = _HED_FROM_RGB.to(device=device, dtype=dtype)
    rgb_from_hed = _RGB_FROM_HED.to(device=device, dtype=dtype)
    concentrations = (od.reshape(n, -1, 3) @ hed_from_rgb) * scale[:, None] + shift[:, None]
    od = (concentrations @ rgb_from_hed).reshape(images.shape)
    rgb255 = torch.expm1(_LOG_256 - od).clamp_(0.0, 255.0)  # 256 * exp(-OD) - 1
    if is_uint8:
        return rgb255.round_().to(torch.uint8)
    return (rgb255 / 255.0).to(images.dtype)
