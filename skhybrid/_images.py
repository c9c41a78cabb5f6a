"""Validation and loading of image inputs shared by the tiler and the estimators.

skhybrid's images are uint8 RGB arrays ``(H, W, 3)`` (the Pillow / scikit-image convention).
They stay uint8 until they reach the model: a float copy of a BreakHis set is four times its
size, so nothing here converts dtype.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DataError, PathNotFoundError

__all__ = [
    "UnreadableImageError",
    "check_bags",
    "check_image_array",
    "load_rgb",
    "one_image",
    "to_image_list",
    "to_rgb_image",
]


class UnreadableImageError(DataError, OSError):
    """An image file exists but cannot be decoded (corrupt, truncated, not an image).

    A :class:`~skhybrid.exceptions.DataError` (so a ``ValueError``, what the tiler has always
    raised, and what the command line reports as a one-line error) and an ``OSError`` (what
    ``load_breakhis`` documents), so code catching either keeps working and every entry point
    raises the same type.
    """


_FLOAT_HINT = (
    "Convert float images in [0, 1] with `(X * 255).round().astype(np.uint8)`; "
    "skhybrid keeps images uint8 until they reach the model."
)


def _check_channels(shape: tuple[int, ...], what: str) -> None:
    channels = shape[-1]
    if channels == 3:
        return
    if channels == 4:
        raise ValueError(f"{what} have 4 channels (RGBA); drop the alpha channel with X[..., :3].")
    if channels == 1:
        raise ValueError(
            f"{what} have 1 channel (grayscale); convert to RGB with np.repeat(X, 3, axis=-1)."
        )
    raise ValueError(f"{what} must have 3 RGB channels in the last axis, got shape {shape}.")


_INT_HINT = (
    "Integer images in [0, 255] convert with `X.astype(np.uint8)` (check the range first: "
    "16-bit images need `(X // 257).astype(np.uint8)`)."
)
_BOOL_HINT = "Masks are not images; for a binary image use `X.astype(np.uint8) * 255`."


def _check_uint8(array: np.ndarray, what: str) -> None:
    if array.dtype == np.uint8:
        return
    # The fix depends on what the user holds: the float hint on an int64 array misleads.
    kind = array.dtype.kind
    hint = _INT_HINT if kind in "iu" else _BOOL_HINT if kind == "b" else _FLOAT_HINT
    raise TypeError(f"{what} must be uint8 RGB, got dtype {array.dtype}. {hint}")


def check_image_array(X: Any, *, what: str = "images") -> np.ndarray:
    """Validate an image stack ``(n, H, W, 3)`` uint8 and return it without copying.

    Parameters
    ----------
    X : array-like of shape (n, H, W, 3)
        RGB images, uint8.
    what : str, default="images"
        Name used in error messages.

    Returns
    -------
    images : ndarray of shape (n, H, W, 3), dtype uint8
        ``X`` itself when it already is such an array (never a modified copy).

    Raises
    ------
    TypeError
        When the dtype is not uint8.
    ValueError
        When the shape is not ``(n, H, W, 3)`` with ``n >= 1``.
    """
    array = np.asarray(X)
    if array.ndim != 4:
        hint = ""
        if array.ndim == 3 and array.shape[-1] in (3, 4):
            hint = " For a single image use X[np.newaxis]."
        elif array.ndim == 3:
            hint = " Grayscale stacks (n, H, W) must be converted to RGB (n, H, W, 3)."
        elif array.ndim == 5:
            hint = " This looks like bags of tiles (n, T, h, w, 3); pass them to an estimator."
        raise ValueError(f"{what} must have shape (n, H, W, 3), got {array.shape}.{hint}")
    _check_channels(array.shape, what)
    _check_uint8(array, what)
    if array.shape[0] == 0:
        raise ValueError(f"{what}: got an empty array (0 images); at least one is required.")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"{what} have an empty spatial size {array.shape[1:3]}.")
    return array


def check_bags(bags: Any, *, what: str = "bags") -> np.ndarray:
    """Validate bags of tiles ``(n, T, h, w, 3)`` uint8 and return them without copying.

    Parameters
    ----------
    bags : array-like of shape (n, T, h, w, 3)
        One bag per image, ``T`` tiles per bag in row-major grid order.
    what : str, default="bags"
        Name used in error messages.

    Returns
    -------
    bags : ndarray of shape (n, T, h, w, 3), dtype uint8
    """
    array = np.asarray(bags)
    if array.ndim != 5:
        raise ValueError(
            f"{what} must have shape (n_images, n_tiles, h, w, 3), got {array.shape}. "
            "SubImageTiler produces such bags from images."
        )
    _check_channels(array.shape, what)
    _check_uint8(array, what)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what}: got an empty array of shape {array.shape}.")
    return array


#: Pillow modes of 16-bit (or wider) integer pixels. ``convert("RGB")`` clips them at 255,
#: which turns almost every pixel of a 16-bit image white, so they are scaled here instead.
_WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb_image(image: Any, what: str = "image") -> Any:
    """Convert a ``PIL.Image.Image`` of any supported mode to mode ``"RGB"`` (8 bits a channel).

    The one place where skhybrid decides how a file's pixels become uint8 RGB (``load_rgb``,
    PIL images given to the estimators, and :func:`skhybrid.datasets.load_breakhis` use it):

    * RGB: kept as it is.
    * Alpha (``RGBA``, ``LA``, ``PA``, palette with a transparent colour): composited on white,
      the colour of an empty slide, so a transparent background reads as background and not as
      whatever colour the transparent pixels happen to store (often black). Fully opaque
      pixels are unchanged.
    * Greyscale (``L``, ``1``) and palette (``P``): the grey value in all three channels,
      the palette's colours.
    * 16-bit greyscale (``I;16``, and ``I``, read as 16-bit): scaled to 8 bits by keeping the
      high byte (``value >> 8``; 65535 -> 255, 1000 -> 3), which is also what Pillow does with
      16-bit RGB PNGs, so both kinds of 16-bit file read the same way.
    * Other colour spaces Pillow knows (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``): Pillow's
      conversion.

    Raises
    ------
    UnreadableImageError
        For floating-point images (mode ``F``: no one scale is right) and ``I`` images with
        values outside ``[0, 65535]``; the message says how to convert them.
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_INTEGER_MODES:
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UnreadableImageError(
                f"{what} has {mode!r} pixels outside 0..65535 (not a 16-bit image); "
                "save it as 8-bit RGB."
            )
        return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8)).convert("RGB")
    if mode == "F":
        raise UnreadableImageError(
            f"{what} has floating-point pixels (mode 'F'); skhybrid reads 8- or 16-bit "
            "images: save it as 8-bit RGB."
        )
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as a uint8 RGB array ``(H, W, 3)``.

    Other modes are converted as :func:`to_rgb_image` documents: alpha composited on white,
    greyscale repeated in the three channels, 16-bit values scaled by ``>> 8``; float images
    are refused.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    UnreadableImageError
        A ``ValueError`` and ``OSError``, when the file is not a readable image (corrupt,
        truncated, empty, not an image, or of a mode that cannot be converted), naming the
        path.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PathNotFoundError(f"Image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here, with its path
            return np.asarray(to_rgb_image(image, str(path)), dtype=np.uint8)
    except UnreadableImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"Cannot read image {path}: {exc}") from exc


def one_image(item: Any, index: int) -> np.ndarray:
    """One uint8 ``(H, W, 3)`` array from an array, PIL image or path; errors name ``index``."""
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item)
    if isinstance(item, Image.Image):
        return np.asarray(to_rgb_image(item, f"Image {index}"), dtype=np.uint8)
    array = np.asarray(item)
    if array.ndim != 3:
        raise ValueError(f"Image {index} must have shape (H, W, 3), got {array.shape}.")
    _check_channels(array.shape, f"Image {index}")
    _check_uint8(array, f"Image {index}")
    return array


def to_image_list(X: Sequence[Any]) -> list[np.ndarray]:
    """Turn a sequence of arrays, PIL images or file paths into uint8 RGB arrays.

    Parameters
    ----------
    X : sequence
        Each item an ``(H, W, 3)`` uint8 array, a ``PIL.Image.Image`` or a path.

    Returns
    -------
    images : list of ndarray
        One ``(H, W, 3)`` uint8 array per item; arrays are returned as given (not copied).
    """
    if len(X) == 0:
        raise ValueError("Got an empty list of images; at least one is required.")
    return [one_image(item, i) for i, item in enumerate(X)]
