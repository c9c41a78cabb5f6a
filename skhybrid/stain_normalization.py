"""Stain normalisation of H&E images: map every image's colours onto one target stain.

Colour in H&E histology differs from lab to lab (stain batch, staining time, scanner); a model
trained on one lab's colours can fail on another's. :class:`StainNormalizer` learns a target
stain from reference images and re-renders every image in it, before tiling:

``"macenko"`` (Macenko et al., ISBI 2009)
    Beer-Lambert optical density ``OD = -log((I + 1) / Io)``; pixels with ``OD < beta`` in any
    channel are background. The two stain vectors are the robust extremes (``alpha`` and
    ``100 - alpha`` percentiles) of the tissue pixels' angles in the plane of the two largest
    eigenvectors of their OD covariance; hematoxylin is the one with the larger red OD.
    Concentrations come from least squares; each image's 99th-percentile concentrations are
    scaled to the reference's, and the image is rebuilt with the reference stain vectors.
    Same constants and steps as ``torchstain``'s Macenko normaliser (``Io=240``, ``alpha=1``,
    ``beta=0.15``), vectorised over a batch.
``"reinhard"`` (Reinhard et al., 2001)
    Match each image's per-channel mean and standard deviation to the reference's, in CIELAB
    (scikit-image's conversion, D65). Reinhard et al. used their ``lαβ`` space, built to
    decorrelate natural images; CIELAB is what torchstain and staintools use, is perceptually
    uniform too, and has a tested inverse, so results are comparable with those toolkits.

See ``docs/stain.md``.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._images import check_bags, check_image_array

__all__ = ["STAIN_NORMALIZATION_METHODS", "StainNormalizer"]

STAIN_NORMALIZATION_METHODS = ("macenko", "reinhard")

#: An image is left unchanged when fewer of its pixels than this fraction are stained (OD >= beta
#: in some channel): the 99th-percentile concentration that Macenko scales by must fall on
#: stain, so at least 1 % is needed (2 % leaves a margin), and Reinhard would blow a white
#: image's faint noise up to the reference's contrast.
_MIN_STAINED_FRACTION = 0.02
#: Macenko estimates the stains from the pixels with OD >= beta in every channel, as torchstain;
#: it needs at least this many of them, and this fraction of the image. Below it (faint images
#: where light eosin stays under beta in red) the estimates fail: torchstain turns such images
#: almost white (a 0.9 % BreakHis patch, and faded synthetic tiles).
_MIN_TISSUE_PIXELS = 100
_MIN_TISSUE_FRACTION = 0.02
#: Colour spread below which an image is one flat colour (plus noise), whose noise the methods
#: would amplify to the reference's contrast: the standard deviation of the tissue OD along its
#: main axis (Macenko), the largest CIELAB standard deviation (Reinhard). On 444 BreakHis 200x
#: patches the smallest are 0.078 and 4.8; a flat colour with +-5 grey levels of noise gives
#: 0.028 and 2.0.
_MIN_OD_SPREAD = 0.04
_MIN_LAB_SPREAD = 2.5
#: Second-largest over largest OD-covariance eigenvalue below which the tissue's colours lie on
#: one line: no plane, no two stains.
_MIN_EIGENVALUE_RATIO = 1e-6
#: Smallest angle (radians) between the two stain vectors; below it the stain matrix is singular.
_MIN_STAIN_ANGLE = 1e-3
#: Pixels per vectorised block in transform: about 50 MB per float64 (P, 3) array.
_BLOCK_PIXELS = 1 << 21


def _as_images(X: Any, what: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``X`` as ``(N, h, w, 3)`` uint8 images (bags flattened) and its original shape."""
    array = np.asarray(X)
    if array.ndim == 5:
        bags = check_bags(array, what=what)
        return bags.reshape(-1, *bags.shape[2:]), bags.shape
    images = check_image_array(array, what=what)
    return images, images.shape


def _masked_percentiles(values: np.ndarray, mask: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Percentiles ``qs`` ``(len(qs), n)`` of ``values[i][mask[i]]`` for each row of ``(n, P)``.

    numpy's default ``"linear"`` method (what torchstain uses), without a Python loop over the
    rows: masked-out entries are sorted to the end as ``+inf``, and one sort serves every
    ``q``. Rows with an empty mask give ``nan`` (their images are flagged invalid anyway).
    """
    counts = mask.sum(axis=1)
    last = np.maximum(counts - 1, 0)
    ordered = np.sort(np.where(mask, values, np.inf), axis=1)
    ordered[:, 0] = np.where(counts > 0, ordered[:, 0], 0.0)  # no inf - inf on empty rows
    results = []
    for q in qs:
        position = q / 100.0 * last
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, last)
        at_low = np.take_along_axis(ordered, low[:, None], axis=1)[:, 0]
        at_high = np.take_along_axis(ordered, high[:, None], axis=1)[:, 0]
        results.append(np.where(counts > 0, at_low + (position - low) * (at_high - at_low), np.nan))
    return np.array(results)


def _enough_stain(od: np.ndarray, beta: float) -> np.ndarray:
    """``(n,)`` whether enough of the pixels of ``(n, P, 3)`` OD are stained to normalise."""
    return (od >= beta).any(axis=2).mean(axis=1) >= _MIN_STAINED_FRACTION


# -- Macenko --------------------------------------------------------------------------------------
def _optical_density(pixels: np.ndarray, intensity: float) -> np.ndarray:
    # Macenko's own definition (and torchstain's), with the transmitted light ``Io`` as a
    # parameter, -log((I + 1) / Io): the method estimates its stain vectors from the data, so
    # it is not the fixed-matrix deconvolution of skhybrid.stain_maths; kept so that results
    # match torchstain's to one grey level.
    return -np.log((pixels.astype(np.float64) + 1.0) / intensity)


def _macenko_stains(
    od: np.ndarray, tissue: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stain matrices ``(n, 3, 2)`` (columns H, E) of ``(n, P, 3)`` OD, and their validity."""
    counts = tissue.sum(axis=1)
    valid = (counts >= _MIN_TISSUE_PIXELS) & (counts >= _MIN_TISSUE_FRACTION * tissue.shape[1])
    safe = np.maximum(counts, 2)[:, None]
    weights = tissue[..., None]
    mean = (od * weights).sum(axis=1) / safe
    centred = (od - mean[:, None, :]) * weights
    cov = np.swapaxes(centred, 1, 2) @ centred / (safe[..., None] - 1)  # BLAS, not einsum
    eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
    valid &= eigenvalues[:, 2] >= _MIN_OD_SPREAD**2
    valid &= eigenvalues[:, 1] > _MIN_EIGENVALUE_RATIO * np.abs(eigenvalues[:, 2])
    # eigh's signs are arbitrary. H&E tissue OD is positive in every channel, and so is its main
    # axis once it points into positive OD: every tissue pixel then projects positively on it,
    # and the angles stay inside (0, pi) without wrapping (torchstain leaves this to chance).
    main_sign = np.where(eigenvectors[:, :, 2].sum(axis=1) < 0, -1.0, 1.0)
    eigenvectors[:, :, 2] *= main_sign[:, None]
    plane = eigenvectors[:, :, 1:3]  # (n, 3, 2): second and first axis, as torchstain
    projected = od @ plane
    phi = np.arctan2(projected[..., 1], projected[..., 0])
    phi_min, phi_max = _masked_percentiles(phi, tissue, (alpha, 100.0 - alpha))
    valid &= np.nan_to_num(phi_max - phi_min) > _MIN_STAIN_ANGLE
    v_min = (plane @ np.stack([np.cos(phi_min), np.sin(phi_min)], axis=1)[..., None])[..., 0]
    v_max = (plane @ np.stack([np.cos(phi_max), np.sin(phi_max)], axis=1)[..., None])[..., 0]
    # Hematoxylin (blue-purple) absorbs more red light than eosin: the larger red OD goes first.
    min_first = (v_min[:, 0] > v_max[:, 0])[:, None]
    hematoxylin = np.where(min_first, v_min, v_max)
    eosin = np.where(min_first, v_max, v_min)
    stains = np.stack([hematoxylin, eosin], axis=2)
    valid &= np.isfinite(stains).all(axis=(1, 2))
    return np.nan_to_num(stains), valid


def _macenko_concentrations(od: np.ndarray, stains: np.ndarray) -> np.ndarray:
    """Least-squares concentrations ``(n, P, 2)`` of ``(n, P, 3)`` OD on ``(n, 3, 2)`` stains."""
    return od @ np.swapaxes(np.linalg.pinv(stains), 1, 2)


def _macenko_fit(
    pixels: np.ndarray, intensity: float, alpha: float, beta: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Stain matrix ``(3, 2)`` and 99th-percentile concentrations ``(2,)`` of ``(P, 3)`` pixels."""
    od = _optical_density(pixels, intensity)[None]
    tissue = (od >= beta).all(axis=2)
    stains, valid = _macenko_stains(od, tissue, alpha)
    if not (valid & _enough_stain(od, beta))[0]:
        return None
    max_concentrations = np.percentile(_macenko_concentrations(od, stains)[0], 99, axis=0)
    if not (max_concentrations > 0).all():
        return None
    return stains[0], max_concentrations


# -- Reinhard -------------------------------------------------------------------------------------
def _rgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(pixels.astype(np.float64) / 255.0)


def _lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    from skimage.color import lab2rgb

    with warnings.catch_warnings():
        # Out-of-gamut colours (negative Z) are clipped, which is what we want; the warning
        # would fire on most matched images.
        warnings.simplefilter("ignore", UserWarning)
        return lab2rgb(lab) * 255.0


class StainNormalizer(TransformerMixin, BaseEstimator):
    """Normalise the H&E stain of images to a reference (Macenko or Reinhard).

    A transformer for the start of a pipeline, before the
    :class:`~skhybrid.SubImageTiler`: uint8 images in, uint8 images of the same shape out, one
    output per input. Read more in ``docs/stain.md``.

    Parameters
    ----------
    method : {"macenko", "reinhard"}, default="macenko"
        ``"macenko"``: re-render each image with the reference's stain vectors and
        concentration range (Macenko et al., 2009). ``"reinhard"``: match each image's CIELAB
        mean and standard deviation to the reference's (Reinhard et al., 2001).
    reference : array-like of shape (H, W, 3) or (n, H, W, 3), uint8, default=None
        Images whose pooled pixels define the target stain. ``None``: the images passed to
        ``fit`` (pooled), so a pipeline normalises to its training set's average stain.
    alpha : float, default=1.0
        Macenko: percentile of the stain angles taken as the robust extremes (``alpha`` and
        ``100 - alpha``).
    beta : float, default=0.15
        Optical density below which (in any channel) a pixel is background. Reinhard leaves
        an image unchanged when less than 2 % of its pixels are stained (``OD >= beta`` in some
        channel), Macenko when less than 2 % (or fewer than 100) have ``OD >= beta`` in every
        channel (the pixels its stain estimate uses).
    intensity : float, default=240
        Macenko: transmitted light intensity ``Io`` in ``OD = -log((I + 1) / Io)``; 240 as in
        Macenko's and torchstain's code (bright background slightly below 255).
    max_fit_pixels : int or None, default=2_000_000
        At most this many pixels, drawn at random without replacement, define the target stain
        (the pooled pixels of a whole training set need not fit in memory). ``None``: all.
    random_state : int, RandomState instance or None, default=None
        Seed of that draw; only used when there are more than ``max_fit_pixels`` pixels.

    Attributes
    ----------
    stain_matrix_ : ndarray of shape (2, 3)
        Macenko: the target's unit optical-density vectors, hematoxylin then eosin (rows).
    max_concentrations_ : ndarray of shape (2,)
        Macenko: the target's 99th-percentile hematoxylin and eosin concentrations.
    lab_mean_, lab_std_ : ndarray of shape (3,)
        Reinhard: the target's CIELAB mean and standard deviation.

    Notes
    -----
    Images with too little tissue (background only, nearly white), a single colour (with or
    without a little noise), or no two separable stains are returned unchanged (identity),
    never as NaN or amplified noise; the same
    conditions on the reference raise ``ValueError`` in ``fit``. Bags ``(n, T, h, w, 3)`` are
    accepted: each tile is normalised as an image.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from skhybrid import SubImageTiler, make_histology
    >>> from skhybrid.stain_normalization import StainNormalizer
    >>> data = make_histology(4, image_size=(96, 96), random_state=0)
    >>> model = make_pipeline(StainNormalizer(reference=data.images[:1]), SubImageTiler((2, 2)))
    >>> model.fit_transform(data.images).shape
    (4, 4, 48, 48, 3)
    """

    _parameter_constraints: ClassVar[dict] = {
        "method": [StrOptions(set(STAIN_NORMALIZATION_METHODS))],
        "reference": ["array-like", None],
        "alpha": [Interval(Real, 0, 50, closed="left")],
        "beta": [Interval(Real, 0, None, closed="neither")],
        "intensity": [Interval(Real, 1, 255, closed="both")],
        "max_fit_pixels": [Interval(Integral, 1000, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        method: str = "macenko",
        reference: Any = None,
        *,
        alpha: float = 1.0,
        beta: float = 0.15,
        intensity: float = 240.0,
        max_fit_pixels: int | None = 2_000_000,
        random_state: Any = None,
    ) -> None:
        self.method = method
        self.reference = reference
        self.alpha = alpha
        self.beta = beta
        self.intensity = intensity
        self.max_fit_pixels = max_fit_pixels
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> StainNormalizer:
        """Learn the target stain from ``reference``, or from ``X`` when it is ``None``.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, T, h, w, 3), uint8
            Images (or bags); checked, and used as the reference when ``reference is None``.
        y : ignored

        Returns
        -------
        self : StainNormalizer

        Raises
        ------
        ValueError
            When the reference has too little tissue, one colour, or no two separable stains.
        """
        images, _ = _as_images(X, "X")
        if self.reference is not None:
            reference = np.asarray(self.reference)
            if reference.ndim == 3:  # one image
                reference = reference[None]
            images, _ = _as_images(reference, "reference")
        pixels = images.reshape(-1, 3)
        if self.max_fit_pixels is not None and len(pixels) > self.max_fit_pixels:
            rng = check_random_state(self.random_state)
            pixels = pixels[np.sort(rng.choice(len(pixels), self.max_fit_pixels, replace=False))]
        source = "reference" if self.reference is not None else "X (no reference given)"
        # The reference must have tissue: a white reference would scale every image to white.
        od = _optical_density(pixels, self.intensity)
        if not _enough_stain(od[None], self.beta)[0]:
            raise ValueError(
                f"The stain {source} is background only: less than "
                f"{_MIN_STAINED_FRACTION:.0%} of its pixels have an optical density >= "
                f"beta={self.beta} in some channel. Pass H&E tissue images as the reference."
            )
        if self.method == "macenko":
            fitted = _macenko_fit(pixels, self.intensity, self.alpha, self.beta)
            if fitted is None:
                raise ValueError(
                    f"Cannot estimate two stains from the {source}: less than "
                    f"{_MIN_TISSUE_FRACTION:.0%} of its pixels have an optical density >= "
                    f"beta={self.beta} in every channel, or they hold a single colour (colours "
                    "along one line in optical density). Pass H&E images with both "
                    "hematoxylin (purple) and eosin (pink) tissue."
                )
            self.stain_matrix_ = fitted[0].T.copy()
            self.max_concentrations_ = fitted[1]
        else:
            lab = _rgb_to_lab(pixels)
            self.lab_mean_ = lab.mean(axis=0)
            self.lab_std_ = lab.std(axis=0)
            if not ((self.lab_std_ > 1e-6).all() and self.lab_std_.max() >= _MIN_LAB_SPREAD):
                raise ValueError(
                    f"The stain {source} has a single colour (CIELAB standard deviation "
                    f"{self.lab_std_.round(3).tolist()}, below {_MIN_LAB_SPREAD} in every "
                    "channel or 0 in one); Reinhard needs a colour spread to match."
                )
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Normalise every image (or tile of a bag) to the fitted stain.

        Parameters
        ----------
        X : array-like of shape (n, H, W, 3) or (n, T, h, w, 3), uint8

        Returns
        -------
        X_normalized : ndarray of the same shape, uint8
            A new array. Images that cannot be normalised (see Notes) are copied unchanged.
        """
        check_is_fitted(self)
        images, shape = _as_images(X, "X")
        out = np.empty_like(images)
        pixels_per_image = images.shape[1] * images.shape[2]
        step = max(1, _BLOCK_PIXELS // pixels_per_image)
        convert = self._macenko_block if self.method == "macenko" else self._reinhard_block
        for start in range(0, len(images), step):
            block = images[start : start + step]
            flat = block.reshape(len(block), -1, 3)
            normalized, valid = convert(flat)
            result = np.rint(np.clip(normalized, 0.0, 255.0)).astype(np.uint8)
            result[~valid] = flat[~valid]
            out[start : start + step] = result.reshape(block.shape)
        return out.reshape(shape)

    def _macenko_block(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        od = _optical_density(flat, self.intensity)
        tissue = (od >= self.beta).all(axis=2)
        stains, valid = _macenko_stains(od, tissue, self.alpha)
        valid &= _enough_stain(od, self.beta)
        concentrations = _macenko_concentrations(od, stains)
        max_concentrations = np.percentile(concentrations, 99, axis=1)  # (n, 2), all pixels
        valid &= (max_concentrations > 0).all(axis=1)
        scale = self.max_concentrations_ / np.where(valid[:, None], max_concentrations, 1.0)
        target_od = (concentrations * scale[:, None, :]) @ self.stain_matrix_
        return self.intensity * np.exp(-target_od), valid

    def _reinhard_block(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stained = _enough_stain(_optical_density(flat, self.intensity), self.beta)
        lab = _rgb_to_lab(flat)
        mean = lab.mean(axis=1, keepdims=True)
        std = lab.std(axis=1, keepdims=True)
        valid = stained & (std > 1e-6).all(axis=(1, 2)) & (std.max(axis=(1, 2)) >= _MIN_LAB_SPREAD)
        scale = self.lab_std_ / np.where(valid[:, None, None], std, 1.0)
        return _lab_to_rgb((lab - mean) * scale + self.lab_mean_), valid

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # images are 4-D; the closest tag sklearn has
        tags.transformer_tags.preserves_dtype = ["uint8"]
        tags.requires_fit = True
        return tags
