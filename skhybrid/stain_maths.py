"""The colour constants and the stain optical density, defined once for the whole package.

Pure numpy (no torch, no scikit-learn), so that both the numpy features
(:mod:`skhybrid.features`) and the pure-torch modules (:mod:`skhybrid.nn`) import the same
numbers instead of keeping copies that drift apart.

Colour deconvolution follows :func:`skimage.color.rgb2hed` exactly (scikit-image 0.21+,
``skimage.color.colorconv.separate_stains``), without depending on scikit-image:

1. ``rgb = max(I / 255, 1e-6)`` for uint8 intensities ``I`` (the floor keeps black finite);
2. ``OD = log(rgb) / log(1e-6)``, an optical density scaled so that black (the floor) is 1
   and white is 0; it equals ``-log10(rgb) / 6``, linear in the amount of stain
   (Beer-Lambert);
3. ``stains = max(OD @ HED_FROM_RGB, 0)``, the ``(H, E, DAB)`` concentrations, clipped at 0.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "HED_FROM_RGB",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LUMA",
    "OD_FLOOR",
    "RGB_FROM_HED",
    "hed_from_optical_density",
    "optical_density",
    "uint8_optical_density_table",
]


def _frozen(array: np.ndarray) -> np.ndarray:
    # Read-only: a shared constant changed in place by one user would change it for all.
    array.setflags(write=False)
    return array


#: Ruifrok & Johnston (2001) stain vectors, rows hematoxylin, eosin, DAB, in (R, G, B) optical
#: density: scikit-image's ``rgb_from_hed``, not normalised, exactly as ``rgb2hed`` uses it.
RGB_FROM_HED: np.ndarray = _frozen(
    np.array(
        [
            [0.65, 0.70, 0.29],  # hematoxylin: nuclei, purple-blue
            [0.07, 0.99, 0.11],  # eosin: cytoplasm and stroma, pink
            [0.27, 0.57, 0.78],  # DAB, the third vector that makes the matrix invertible
        ]
    )
)
#: Its inverse, scikit-image's ``hed_from_rgb``: ``OD @ HED_FROM_RGB`` gives ``(H, E, DAB)``.
HED_FROM_RGB: np.ndarray = _frozen(np.linalg.inv(RGB_FROM_HED))

#: scikit-image's floor on ``[0, 1]`` intensities before the logarithm (``separate_stains``).
OD_FLOOR: float = 1e-6

#: ITU-R BT.601 luma weights of (R, G, B): the usual grey level of an RGB image.
LUMA: np.ndarray = _frozen(np.array([0.299, 0.587, 0.114]))

#: Per-channel mean and standard deviation of ImageNet in ``[0, 1]`` RGB, the input statistics
#: of torchvision's (and timm's) pretrained backbones.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Optical density ``log(max(rgb, 1e-6)) / log(1e-6)`` of ``[0, 1]`` intensities.

    Parameters
    ----------
    rgb : ndarray of float
        Intensities in ``[0, 1]`` (uint8 values divided by 255).

    Returns
    -------
    od : ndarray of float64, same shape
        0 for white, 1 for black.
    """
    return np.log(np.maximum(np.asarray(rgb, dtype=np.float64), OD_FLOOR)) / np.log(OD_FLOOR)


def uint8_optical_density_table() -> np.ndarray:
    """The optical density of each of the 256 uint8 intensities, ``(256,)`` float64.

    ``table[I] == optical_density(I / 255)``: looking pixels up in it avoids a log per pixel.
    """
    return optical_density(np.arange(256) / 255.0)


def hed_from_optical_density(od: np.ndarray) -> np.ndarray:
    """``(H, E, DAB)`` concentrations ``max(od @ HED_FROM_RGB, 0)`` of ``(..., 3)`` densities.

    The matrix is cast to ``od``'s floating dtype, so float32 densities stay float32.
    """
    od = np.asarray(od)
    dtype = od.dtype if np.issubdtype(od.dtype, np.floating) else np.float64
    return np.maximum(od.astype(dtype, copy=False) @ HED_FROM_RGB.astype(dtype), 0)
