"""Cheap colour and texture features of H&E tiles.

:class:`ColorTextureFeatures` turns uint8 RGB tiles into a short float32 vector per tile: colour
statistics, hematoxylin/eosin optical densities from colour deconvolution, the share of dark
(nuclear) pixels, gradient energy and a coarse intensity histogram. With a logistic regression
on top it is the cheap baseline every deep model has to beat, and a fast proposer of tile
labels for :class:`~skhybrid.self_learning.SelfLearningRelabeler`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._images import check_bags, check_image_array
from .stain_maths import (
    LUMA,
    RGB_FROM_HED,
    hed_from_optical_density,
    uint8_optical_density_table,
)

__all__ = ["RGB_FROM_HED", "ColorTextureFeatures", "hed_optical_density"]

# The optical density of each uint8 intensity, float32 as the features are.
_OD_TABLE = uint8_optical_density_table().astype(np.float32)
_OD_TABLE.setflags(write=False)


def hed_optical_density(tiles: np.ndarray) -> np.ndarray:
    """Separate uint8 RGB pixels into hematoxylin, eosin and DAB concentrations.

    Exactly :func:`skimage.color.rgb2hed` (to float32 rounding), computed in numpy.

    Parameters
    ----------
    tiles : ndarray of shape (..., 3), dtype uint8
        RGB pixels.

    Returns
    -------
    stains : ndarray of shape (..., 3), dtype float32
        ``(H, E, DAB)`` concentrations ``max(OD @ HED_FROM_RGB, 0)``: 0 for white, never
        negative (colours no mix of the stains explains are clipped, as scikit-image does).

    Notes
    -----
    Beer-Lambert: the optical density ``OD = log(max(I / 255, 1e-6)) / log(1e-6)`` of a pixel
    (0 for white, 1 for black) is a mix ``c @ RGB_FROM_HED`` of the Ruifrok & Johnston stain
    vectors, so ``c = OD @ inv(RGB_FROM_HED)``. The constants and the definition live in
    :mod:`skhybrid.stain_maths`, shared with :func:`skhybrid.nn.stain.hematoxylin_map`.
    """
    # A lookup table of the 256 possible densities avoids a log per pixel.
    od = _OD_TABLE[np.asarray(tiles)]
    return hed_from_optical_density(od)


def _check_thresholds(values: Sequence[float]) -> tuple[float, ...]:
    """The thresholds as floats; each must be a number in ``(0, 1)``.

    ``_parameter_constraints`` checks that they come as a tuple or list; scikit-learn's
    constraints cannot describe the elements, so this does.
    """
    for value in values:
        if not isinstance(value, numbers.Real) or not 0 < value < 1:
            raise ValueError(f"dark_thresholds must lie in (0, 1), got {values!r}.")
    return tuple(float(v) for v in values)


class ColorTextureFeatures(TransformerMixin, BaseEstimator):
    """Colour, stain and texture statistics of H&E tiles.

    Tiles ``(n, h, w, 3)`` uint8 become ``(n, d)`` float32 features; bags ``(n, T, h, w, 3)``
    become ``(n, T, d)``. Per tile:

    - ``rgb_mean_{r,g,b}``, ``rgb_std_{r,g,b}``: colour in ``[0, 1]`` units;
    - ``hematoxylin_{mean,std}``, ``eosin_{mean,std}``: optical densities after colour
      deconvolution with the Ruifrok H&E matrix (:data:`RGB_FROM_HED`); nuclei raise
      hematoxylin, stroma eosin;
    - ``dark_fraction_<t>``: share of pixels whose grey level is below ``t`` (nuclear
      pixels), one per ``dark_thresholds``;
    - ``gradient_abs_mean``, ``gradient_energy``: mean absolute and mean squared difference
      of neighbouring grey levels, a texture measure (many small dark nuclei give high
      gradient energy);
    - ``hist_<i>``: share of pixels in each of ``n_bins`` equal grey-level bins.

    Parameters
    ----------
    dark_thresholds : sequence of float, default=(0.35, 0.55)
        Grey levels in ``(0, 1)`` below which a pixel counts as dark (nuclear).
    n_bins : int, default=8
        Bins of the grey-level histogram; 0 leaves the histogram out.
    chunk_size : int, default=64
        Tiles processed at once. Temporary memory is about ``chunk_size * h * w * 40`` bytes
        (about 130 MB for 224x224 tiles at the default); the result does not depend on it.

    Attributes
    ----------
    n_features_out_ : int
        Number of features per tile, ``10 + len(dark_thresholds) + 2 + n_bins``.

    See Also
    --------
    skhybrid.self_learning.SelfLearningRelabeler : Uses these features with a linear model to
        propose tile labels.

    Notes
    -----
    The transformer is stateless: ``fit`` only validates the parameters and the input. It
    takes images, not 2-D data, so scikit-learn's generic estimator checks that feed random
    2-D floats do not apply (see ``docs/self_learning.md``).

    Examples
    --------
    >>> import numpy as np
    >>> from skhybrid.features import ColorTextureFeatures
    >>> tiles = np.full((2, 32, 48, 3), 200, dtype=np.uint8)
    >>> ColorTextureFeatures().fit_transform(tiles).shape
    (2, 22)
    >>> bags = np.full((2, 9, 32, 48, 3), 200, dtype=np.uint8)
    >>> ColorTextureFeatures().fit_transform(bags).shape
    (2, 9, 22)
    """

    def __init__(
        self,
        dark_thresholds: Sequence[float] = (0.35, 0.55),
        n_bins: int = 8,
        chunk_size: int = 64,
    ) -> None:
        self.dark_thresholds = dark_thresholds
        self.n_bins = n_bins
        self.chunk_size = chunk_size

    _parameter_constraints: ClassVar[dict] = {
        "dark_thresholds": [tuple, list],
        "n_bins": [Interval(numbers.Integral, 0, None, closed="left")],
        "chunk_size": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def _check_params(self) -> tuple[tuple[float, ...], int, int]:
        self._validate_params()
        thresholds = _check_thresholds(self.dark_thresholds)
        return thresholds, int(self.n_bins), int(self.chunk_size)

    @staticmethod
    def _as_tiles(X: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        """Return ``(tiles (N, h, w, 3), leading shape)`` for tiles or bags, without copying."""
        array = np.asarray(X)
        if array.ndim == 5:
            bags = check_bags(array)
            return bags.reshape(-1, *bags.shape[2:]), bags.shape[:2]
        tiles = check_image_array(array, what="tiles")
        return tiles, tiles.shape[:1]

    def fit(self, X: Any, y: Any = None) -> ColorTextureFeatures:
        """Validate the parameters and the tiles.

        Parameters
        ----------
        X : uint8 array of shape (n, h, w, 3) or (n, T, h, w, 3)
            Tiles or bags of tiles.
        y : ignored

        Returns
        -------
        self : ColorTextureFeatures
        """
        thresholds, n_bins, _ = self._check_params()
        self._as_tiles(X)
        self.n_features_out_ = 10 + len(thresholds) + 2 + n_bins
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Compute the features of each tile.

        Parameters
        ----------
        X : uint8 array of shape (n, h, w, 3) or (n, T, h, w, 3)
            Tiles or bags of tiles (any tile size).

        Returns
        -------
        features : ndarray of shape (n, d) or (n, T, d), dtype float32
        """
        check_is_fitted(self, "n_features_out_")
        thresholds, n_bins, chunk_size = self._check_params()
        tiles, leading = self._as_tiles(X)
        out = np.empty((len(tiles), self.n_features_out_), dtype=np.float32)
        for start in range(0, len(tiles), chunk_size):
            chunk = tiles[start : start + chunk_size]
            out[start : start + len(chunk)] = _chunk_features(chunk, thresholds, n_bins)
        return out.reshape(*leading, self.n_features_out_)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output features.

        Parameters
        ----------
        input_features : ignored
            Tiles have no input feature names.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "n_features_out_")
        thresholds, n_bins, _ = self._check_params()
        names = [f"rgb_mean_{c}" for c in "rgb"] + [f"rgb_std_{c}" for c in "rgb"]
        names += ["hematoxylin_mean", "hematoxylin_std", "eosin_mean", "eosin_std"]
        names += [f"dark_fraction_{t:g}" for t in thresholds]
        names += ["gradient_abs_mean", "gradient_energy"]
        names += [f"hist_{i}" for i in range(n_bins)]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # images are 4-D; the closest tag sklearn has
        tags.transformer_tags.preserves_dtype = []  # uint8 in, float32 out
        return tags


def _mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile mean and standard deviation over axis 1, accumulated in float64.

    A float32 sum over a 224x224 tile loses about four digits; float64 keeps the features
    independent of the tile size.
    """
    mean = values.mean(axis=1, dtype=np.float64)
    mean_sq = np.square(values, dtype=np.float64).mean(axis=1)
    return mean, np.sqrt(np.maximum(mean_sq - mean**2, 0.0))


def _gradient_features(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute and mean squared neighbour differences of ``(c, h, w)`` grey tiles."""
    parts_abs, parts_sq, count = [], [], 0
    for diff in (np.diff(gray, axis=1), np.diff(gray, axis=2)):
        flat = diff.reshape(len(gray), -1)
        parts_abs.append(np.abs(flat).sum(axis=1, dtype=np.float64))
        parts_sq.append(np.square(flat, dtype=np.float64).sum(axis=1))
        count += flat.shape[1]
    count = max(count, 1)  # a 1x1 tile has no neighbours
    return sum(parts_abs) / count, sum(parts_sq) / count


def _grey_histogram(gray_flat: np.ndarray, n_bins: int) -> np.ndarray:
    """Share of each tile's pixels in ``n_bins`` equal grey-level bins, without a Python loop."""
    n_tiles, n_pixels = gray_flat.shape
    bins = np.minimum((gray_flat * n_bins).astype(np.int64), n_bins - 1)
    # Offsetting each tile's bins by tile * n_bins turns one bincount into per-tile histograms.
    bins += np.arange(n_tiles)[:, None] * n_bins
    counts = np.bincount(bins.ravel(), minlength=n_tiles * n_bins)
    return counts.reshape(n_tiles, n_bins) / n_pixels


def _chunk_features(tiles: np.ndarray, thresholds: tuple[float, ...], n_bins: int) -> np.ndarray:
    """Features of one chunk of tiles ``(c, h, w, 3)`` uint8 -> ``(c, d)`` float64."""
    n_tiles, height, width, _ = tiles.shape
    rgb = tiles.reshape(n_tiles, height * width, 3).astype(np.float32) / np.float32(255)
    rgb_mean, rgb_std = _mean_std(rgb)
    stains = hed_optical_density(tiles).reshape(n_tiles, height * width, 3)
    stain_mean, stain_std = _mean_std(stains[..., :2])
    gray_flat = rgb @ LUMA.astype(np.float32)
    del rgb, stains
    dark = [(gray_flat < t).mean(axis=1) for t in thresholds]
    grad_abs, grad_energy = _gradient_features(gray_flat.reshape(n_tiles, height, width))
    columns = [
        rgb_mean,
        rgb_std,
        np.stack([stain_mean[:, 0], stain_std[:, 0], stain_mean[:, 1], stain_std[:, 1]], 1),
        np.stack([*dark, grad_abs, grad_energy], axis=1),
    ]
    if n_bins:
        columns.append(_grey_histogram(gray_flat, n_bins))
    return np.concatenate(columns, axis=1)
