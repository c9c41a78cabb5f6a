"""Cutting images into a grid of sub-images (tiles) and moving between bags and tiles.

A *bag* is the set of tiles of one image, ``(T, h, w, 3)`` with ``T = rows * cols`` in
row-major order; a stack of bags is ``(n, T, h, w, 3)``. Estimators train on flattened tiles
``(n * T, h, w, 3)`` and carry the image index as ``groups`` so that the tiles of one image never
land on both sides of a split.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._images import check_bags, check_image_array, load_rgb, one_image, to_image_list
from .exceptions import PathNotFoundError

__all__ = [
    "SubImageTiler",
    "broadcast_bag_labels",
    "flatten_bags",
    "tile_boxes",
    "tile_edges",
    "tile_image_array",
    "tile_to_memmap",
    "unflatten_tiles",
]

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
_REMAINDERS = ("crop", "resize", "error")


def _check_pair(value: Any, name: str) -> tuple[int, int]:
    """Return ``value`` as a pair of positive ints; bools are not integers here.

    The one checker of ``(rows, cols)`` / ``(height, width)`` pairs in the package (the tiler's
    ``grid`` and ``tile_size``, :func:`~skhybrid.datasets.make_histology`'s ``grid`` and
    ``image_size``). scikit-learn's parameter constraints cannot describe the contents of a
    pair, so ``_parameter_constraints`` checks the container type and this the contents.
    """
    pair = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else None
    if (
        pair is None
        or len(pair) != 2
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in pair
        )
        or min(pair) < 1
    ):
        raise ValueError(f"{name} must be a pair of positive integers, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _axis_edges(length: int, parts: int, remainder: str) -> np.ndarray:
    """The ``parts + 1`` pixel edges of ``parts`` tiles along an axis of ``length`` pixels."""
    if remainder == "resize":
        # The tiler resizes the image to a multiple of the grid, so tile k shows the original
        # span [k * length / parts, (k + 1) * length / parts), here rounded to whole pixels
        # (half to even, as Python's round).
        return np.rint(np.arange(parts + 1) * length / parts).astype(np.int64)
    size = length // parts
    # Trimming evenly from both sides keeps the grid centred on the image (the odd pixel,
    # if any, goes from the bottom / right).
    return (length - parts * size) // 2 + size * np.arange(parts + 1, dtype=np.int64)


def tile_edges(
    height: int, width: int, grid: tuple[int, int] = (3, 3), *, remainder: str = "crop"
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the tile grid a tiler cuts out of a ``height x width`` image.

    The single definition of the tile geometry: :class:`SubImageTiler`,
    :func:`tile_image_array`, :func:`tile_boxes`, :func:`skhybrid.overlay.render_tile_overlay`
    and :func:`skhybrid.datasets.make_histology` all use it.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    grid : (rows, cols), default=(3, 3)
        Number of tile rows and columns.
    remainder : {"crop", "resize", "error"}, default="crop"
        As :class:`SubImageTiler`'s. ``"crop"``: tiles of ``height // rows`` by
        ``width // cols`` pixels, the ``height % rows`` / ``width % cols`` extra pixels
        trimmed evenly from both sides (the odd one from the bottom / right). ``"error"``: the
        same, but an image not divisible by the grid raises. ``"resize"``: the region of the
        original image each tile shows once the image is resized to a multiple of the grid,
        ``round(k * height / rows)``; these tiles may differ in size by one pixel.

    Returns
    -------
    row_edges : ndarray of shape (rows + 1,), dtype int64
        Tile row ``r`` covers pixel rows ``row_edges[r]:row_edges[r + 1]``.
    col_edges : ndarray of shape (cols + 1,), dtype int64
        Tile column ``c`` covers pixel columns ``col_edges[c]:col_edges[c + 1]``.

    Raises
    ------
    ValueError
        If the grid has more rows or columns than the image has pixels, or if
        ``remainder="error"`` and the image is not divisible by the grid.

    Examples
    --------
    >>> from skhybrid.tiling import tile_edges
    >>> rows, cols = tile_edges(460, 700)  # BreakHis: one row and one column trimmed
    >>> rows.tolist(), cols.tolist()
    ([0, 153, 306, 459], [0, 233, 466, 699])
    """
    rows, cols = grid = _check_pair(grid, "grid")
    height, width = _check_pair((height, width), "(height, width)")
    if remainder not in _REMAINDERS:
        raise ValueError(f"remainder must be one of {_REMAINDERS}, got {remainder!r}.")
    if rows > height or cols > width:
        raise ValueError(
            f"grid {grid} (rows, cols) is larger than the image ({height}x{width} pixels): "
            "each tile needs at least one pixel."
        )
    if remainder == "error" and (height % rows or width % cols):
        raise ValueError(
            f"Image size {height}x{width} is not divisible by grid {grid}; use "
            "remainder='crop' (trim the extra pixels evenly) or remainder='resize'."
        )
    return _axis_edges(height, rows, remainder), _axis_edges(width, cols, remainder)


def tile_boxes(
    height: int, width: int, grid: tuple[int, int] = (3, 3), *, remainder: str = "crop"
) -> np.ndarray:
    """The ``(top, left, bottom, right)`` pixel box of every tile, in row-major order.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    grid : (rows, cols), default=(3, 3)
        Number of tile rows and columns.
    remainder : {"crop", "resize", "error"}, default="crop"
        As in :func:`tile_edges`, which defines the geometry.

    Returns
    -------
    boxes : ndarray of shape (rows * cols, 4), dtype int64
        Tile ``t`` is ``image[top:bottom, left:right]`` for ``top, left, bottom, right =
        boxes[t]``; ``t = r * cols + c``, the order of the tiles in a bag.

    Examples
    --------
    >>> from skhybrid.tiling import tile_boxes
    >>> tile_boxes(32, 33, (3, 3))[[0, 8]].tolist()  # 2 extra rows: one off top and bottom
    [[1, 0, 11, 11], [21, 22, 31, 33]]
    """
    row_edges, col_edges = tile_edges(height, width, grid, remainder=remainder)
    top, left = np.meshgrid(row_edges[:-1], col_edges[:-1], indexing="ij")
    bottom, right = np.meshgrid(row_edges[1:], col_edges[1:], indexing="ij")
    return np.stack([top.ravel(), left.ravel(), bottom.ravel(), right.ravel()], axis=1)


def _crop_geometry(
    height: int, width: int, grid: tuple[int, int], remainder: str
) -> tuple[int, int, int, int]:
    """``(top, left, tile_h, tile_w)`` of the equal tiles cut from an image, off :func:`tile_edges`.

    ``"resize"`` cuts like ``"crop"``: the tiler has already resized the image to a multiple
    of the grid, where the two coincide.
    """
    remainder = "crop" if remainder == "resize" else remainder
    row_edges, col_edges = tile_edges(height, width, grid, remainder=remainder)
    return (
        int(row_edges[0]),
        int(col_edges[0]),
        int(row_edges[1] - row_edges[0]),
        int(col_edges[1] - col_edges[0]),
    )


def _tile_into(images: np.ndarray, grid: tuple[int, int], remainder: str, out: np.ndarray) -> None:
    """Copy the grid tiles of ``images`` ``(n, H, W, C)`` into ``out`` ``(n, T, h, w, C)``."""
    n, height, width, channels = images.shape
    rows, cols = grid
    top, left, tile_h, tile_w = _crop_geometry(height, width, grid, remainder)
    cropped = images[:, top : top + rows * tile_h, left : left + cols * tile_w]
    # (n, rows, tile_h, cols, tile_w, C) -> (n, rows, cols, tile_h, tile_w, C): a strided view
    # that one copy turns into row-major tiles, written straight into the caller's buffer.
    blocks = cropped.reshape(n, rows, tile_h, cols, tile_w, channels).transpose(0, 1, 3, 2, 4, 5)
    np.copyto(out.reshape(n, rows, cols, tile_h, tile_w, channels), blocks)


def tile_image_array(
    images: np.ndarray, grid: tuple[int, int] = (3, 3), *, remainder: str = "crop"
) -> np.ndarray:
    """Cut equal-size images into a grid of tiles without resizing.

    Parameters
    ----------
    images : ndarray of shape (n, H, W, C)
        Images; any dtype.
    grid : (rows, cols), default=(3, 3)
        Number of tile rows and columns.
    remainder : {"crop", "error"}, default="crop"
        ``H % rows`` and ``W % cols`` extra pixels are trimmed evenly from both sides, or
        rejected.

    Returns
    -------
    bags : ndarray of shape (n, rows * cols, H // rows, W // cols, C)
        A new contiguous array; tiles in row-major order.
    """
    n, height, width, channels = images.shape
    rows, cols = grid
    _, _, tile_h, tile_w = _crop_geometry(height, width, grid, remainder)
    out = np.empty((n, rows * cols, tile_h, tile_w, channels), dtype=images.dtype)
    _tile_into(images, grid, remainder, out)
    return out


# Tiles resized per call of the resize kernel, in bytes of source pixels. Small calls keep the
# source tiles and the output rows in the per-core L2 cache: on a 2-core Zen 5, one 700x460
# image (9 tiles, 0.96 MB) per call tiles ~2x faster than 64 images per call (see
# docs/performance.md); torch's uint8 resize gains nothing from a second intra-op thread here.
_RESIZE_CHUNK_BYTES = 1 << 20


def _resize_op(interpolation: str, antialias: bool) -> Any:
    """Return the ATen resize kernel behind ``F.interpolate`` that accepts ``out=``.

    ``F.interpolate`` dispatches to exactly these kernels, so results are bit-identical; the
    ``out=`` overloads let the kernel write into the caller's (channels_last) buffer instead of
    allocating a tensor that would then be copied. ``None`` if this torch lacks one of them.
    """
    import torch

    aten = torch.ops.aten
    names = {
        ("bilinear", True): "_upsample_bilinear2d_aa",
        ("bilinear", False): "upsample_bilinear2d",
        ("bicubic", True): "_upsample_bicubic2d_aa",
        ("bicubic", False): "upsample_bicubic2d",
        ("nearest", True): "upsample_nearest2d",
        ("nearest", False): "upsample_nearest2d",
    }
    try:
        return getattr(aten, names[interpolation, bool(antialias)]).out
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch build
        return None


def _resize_reference(
    tiles: np.ndarray, size: tuple[int, int], interpolation: str, antialias: bool
) -> np.ndarray:
    """Resize ``(N, h, w, 3)`` uint8 tiles with ``F.interpolate`` (the reference path)."""
    import torch
    import torch.nn.functional as F

    source = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2)  # channels_last
    kwargs: dict[str, Any] = {"size": size, "mode": interpolation}
    if interpolation != "nearest":
        kwargs.update(align_corners=False, antialias=antialias)
    with torch.inference_mode():
        resized = F.interpolate(source, **kwargs)
    return resized.permute(0, 2, 3, 1).numpy()


def _resize_into(tiles: np.ndarray, out: np.ndarray, interpolation: str, antialias: bool) -> None:
    """Resize ``(N, h, w, 3)`` uint8 tiles into the C-contiguous ``out`` ``(N, H, W, 3)``.

    Same pixels as :func:`_resize_reference` (same torch uint8 kernels), without its
    temporary output and the copy out of it.
    """
    import torch

    size = [int(out.shape[1]), int(out.shape[2])]
    op = _resize_op(interpolation, antialias)
    if op is not None and out.flags.c_contiguous and out.flags.writeable:
        source = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2)
        target = torch.from_numpy(out).permute(0, 3, 1, 2)  # a channels_last view of `out`
        scales = (None, None) if interpolation == "nearest" else (False, None, None)
        try:
            with torch.inference_mode():
                op(source, size, *scales, out=target)
            return
        except (RuntimeError, NotImplementedError):  # pragma: no cover - older torch builds
            pass
    np.copyto(out, _resize_reference(tiles, tuple(size), interpolation, antialias))


def _resize_tiles(
    tiles: np.ndarray, size: tuple[int, int], interpolation: str, antialias: bool
) -> np.ndarray:
    """Resize ``(N, h, w, 3)`` uint8 tiles to ``size`` with torch's uint8 kernels."""
    out = np.empty((len(tiles), *size, tiles.shape[-1]), dtype=np.uint8)
    _resize_into(tiles, out, interpolation, antialias)
    return out


class SubImageTiler(TransformerMixin, BaseEstimator):
    """Cut each image into a ``rows x cols`` grid of sub-images (tiles).

    The paper cuts every 700x460 BreakHis image into a 3x3 grid and resizes each tile to
    224x224; ``SubImageTiler(grid=(3, 3), tile_size=(224, 224))`` does exactly that.

    Parameters
    ----------
    grid : (rows, cols), default=(3, 3)
        Number of tile rows and columns; tiles come out in row-major order.
    tile_size : (height, width) or None, default=None
        Resize every tile to this size. ``None`` keeps the native tile size
        ``(H // rows, W // cols)``.
    remainder : {"crop", "resize", "error"}, default="crop"
        What to do when ``H`` or ``W`` is not divisible by the grid. ``"crop"`` trims the
        ``H % rows`` / ``W % cols`` extra pixels evenly from both sides (700x460 loses one
        column and one row: tiles of 233x153); ``"resize"`` first resizes the whole image to the
        nearest smaller multiple of the grid, keeping all the tissue; ``"error"`` rejects it.
    interpolation : {"bilinear", "bicubic", "nearest"}, default="bilinear"
        Resampling filter for ``tile_size``.
    antialias : bool, default=True
        Anti-alias when downsampling (ignored for ``"nearest"``).
    batch_size : int, default=64
        Images processed at once; bounds the temporary memory of resizing and loading.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(H, W)`` of the images seen in ``fit`` (``None`` if their sizes differ).
    n_tiles_ : int
        Tiles per image, ``rows * cols``.
    tile_shape_ : tuple of int or None
        ``(h, w)`` of the output tiles, ``None`` when it depends on the image size.

    Notes
    -----
    Input may be a uint8 array ``(n, H, W, 3)`` or a list of ``(H, W, 3)`` uint8 arrays,
    ``PIL.Image`` objects or image file paths (loaded ``batch_size`` at a time, so a list of
    paths never needs all images in memory). Images of different sizes in one list need
    ``tile_size``. Float images are rejected rather than guessed at (``[0, 1]`` or
    ``[0, 255]``?); convert them with ``(X * 255).round().astype(np.uint8)``.

    The output is always a new array: changing it never changes the input images.

    Examples
    --------
    >>> import numpy as np
    >>> from skhybrid.tiling import SubImageTiler
    >>> images = np.zeros((2, 460, 700, 3), dtype=np.uint8)
    >>> SubImageTiler().fit_transform(images).shape
    (2, 9, 153, 233, 3)
    >>> SubImageTiler(tile_size=(224, 224)).fit_transform(images).shape
    (2, 9, 224, 224, 3)
    """

    def __init__(
        self,
        grid: tuple[int, int] = (3, 3),
        tile_size: tuple[int, int] | None = None,
        *,
        remainder: str = "crop",
        interpolation: str = "bilinear",
        antialias: bool = True,
        batch_size: int = 64,
    ) -> None:
        self.grid = grid
        self.tile_size = tile_size
        self.remainder = remainder
        self.interpolation = interpolation
        self.antialias = antialias
        self.batch_size = batch_size

    # -- validation ---------------------------------------------------------------------------
    _parameter_constraints: ClassVar[dict] = {
        # scikit-learn's constraints cannot say "two positive ints": they check the container,
        # _check_pair the contents (in _check_params).
        "grid": [tuple, list],
        "tile_size": [tuple, list, None],
        "remainder": [StrOptions(set(_REMAINDERS))],
        "interpolation": [StrOptions(set(_INTERPOLATIONS))],
        "antialias": ["boolean"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def _check_params(self) -> tuple[int, int]:
        """Validate every parameter and return the grid as ``(rows, cols)`` ints."""
        self._validate_params()
        grid = _check_pair(self.grid, "grid")
        if self.tile_size is not None:
            _check_pair(self.tile_size, "tile_size")
        return grid

    @staticmethod
    def _is_array_input(X: Any) -> bool:
        return isinstance(X, np.ndarray) or (
            hasattr(X, "__array__") and not isinstance(X, (list, tuple))
        )

    def _image_sizes(self, X: Any) -> list[tuple[int, int]]:
        if self._is_array_input(X):
            images = check_image_array(X)
            return [images.shape[1:3]] * len(images)
        if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
            raise TypeError(
                "X must be a uint8 array (n, H, W, 3) or a list of images (arrays, PIL images "
                f"or file paths), got {type(X).__name__}."
            )
        from PIL import Image

        sizes = []
        for index, item in enumerate(X):
            if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
                # Only the header is read here; pixels are decoded in transform.
                try:
                    with Image.open(item) as image:
                        sizes.append((image.height, image.width))
                except FileNotFoundError as exc:
                    raise PathNotFoundError(f"Image file not found: {item}") from exc
                except OSError as exc:
                    raise ValueError(f"Cannot read image {item}: {exc}") from exc
            else:
                sizes.append(one_image(item, index).shape[:2])
        if not sizes:
            raise ValueError("Got an empty list of images; at least one is required.")
        return sizes

    def fit(self, X: Any, y: Any = None) -> SubImageTiler:
        """Validate the parameters and the images and record their geometry.

        Parameters
        ----------
        X : uint8 array of shape (n, H, W, 3) or list of images
            Arrays, PIL images or file paths (only the headers of files are read).
        y : ignored

        Returns
        -------
        self : SubImageTiler
        """
        grid = self._check_params()
        sizes = self._image_sizes(_paths_as_list(X))
        distinct = set(sizes)
        for height, width in distinct:
            tile_edges(height, width, grid, remainder=self.remainder)  # raises if it cannot cut
        if len(distinct) > 1 and self.tile_size is None:
            raise ValueError(
                f"Images have {len(distinct)} different sizes (e.g. {sorted(distinct)[:3]}); "
                "set tile_size=(h, w) so that all tiles get one size."
            )
        self.image_shape_ = sizes[0] if len(distinct) == 1 else None
        self.n_tiles_ = grid[0] * grid[1]
        if self.tile_size is not None:
            self.tile_shape_ = tuple(self.tile_size)
        elif self.image_shape_ is not None:
            self.tile_shape_ = (self.image_shape_[0] // grid[0], self.image_shape_[1] // grid[1])
        else:  # pragma: no cover - excluded above
            self.tile_shape_ = None
        return self

    # -- transform ----------------------------------------------------------------------------
    def _bag_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(T, h, w)`` of the bags cut from ``height x width`` images."""
        rows, cols = self.grid
        if self.tile_size is not None:
            return rows * cols, int(self.tile_size[0]), int(self.tile_size[1])
        if self.remainder == "resize":
            height, width = height // rows * rows, width // cols * cols
        _, _, tile_h, tile_w = _crop_geometry(height, width, (rows, cols), self.remainder)
        return rows * cols, tile_h, tile_w

    def _tile_batch(self, images: np.ndarray, out: np.ndarray) -> None:
        """Tile (and resize) a batch of equal-size images into ``out`` ``(n, T, h, w, 3)``."""
        grid = tuple(self.grid)
        if self.remainder == "resize":
            height, width = images.shape[1:3]
            target = (height // grid[0] * grid[0], width // grid[1] * grid[1])
            if target != (height, width):
                images = _resize_tiles(images, target, self.interpolation, self.antialias)
        _, _, tile_h, tile_w = _crop_geometry(*images.shape[1:3], grid, self.remainder)
        n, n_tiles, out_h, out_w, channels = out.shape
        if (out_h, out_w) == (tile_h, tile_w):
            _tile_into(images, grid, self.remainder, out)
            return
        # Tile and resize a few images at a time so that the intermediate tiles stay in cache
        # and the resized pixels go straight into `out` (no full-batch temporaries).
        step = max(1, _RESIZE_CHUNK_BYTES // (n_tiles * tile_h * tile_w * channels))
        for start in range(0, n, step):
            tiles = tile_image_array(images[start : start + step], grid, remainder=self.remainder)
            dest = out[start : start + step]
            _resize_into(
                tiles.reshape(-1, tile_h, tile_w, channels),
                dest.reshape(-1, out_h, out_w, channels),
                self.interpolation,
                self.antialias,
            )

    def _iter_batches(self, X: Any) -> Iterator[np.ndarray]:
        if self._is_array_input(X):
            images = check_image_array(X)
            for start in range(0, len(images), self.batch_size):
                yield images[start : start + self.batch_size]
            return
        if len(X) == 0:
            to_image_list(X)  # raises the empty-list error
        for start in range(0, len(X), self.batch_size):
            chunk = X[start : start + self.batch_size]
            first = _decode(chunk[0], start)
            # Each image is decoded straight into its row of the batch: a list of decoded
            # images then np.stack held every image twice (measured: 124 MB instead of 62 MB
            # of temporaries for 64 BreakHis images, docs/performance.md).
            batch = np.empty((len(chunk), *first.shape), dtype=np.uint8)
            batch[0] = first
            del first
            for offset in range(1, len(chunk)):
                image = _decode(chunk[offset], start + offset)
                if image.shape != batch.shape[1:]:
                    # Mixed sizes: the images so far, then one at a time; transform accepts
                    # them with tile_size and names the odd image without.
                    yield batch[:offset]
                    yield image[np.newaxis]
                    for later in range(offset + 1, len(chunk)):
                        yield _decode(chunk[later], start + later)[np.newaxis]
                    break
                batch[offset] = image
            else:
                yield batch
            # Drop this batch before the next is allocated: two would be alive at once.
            del batch

    def transform(self, X: Any, *, out: np.ndarray | None = None) -> np.ndarray:
        """Cut images into bags of tiles.

        Parameters
        ----------
        X : uint8 array of shape (n, H, W, 3) or list of images
            Arrays, PIL images or file paths.
        out : uint8 ndarray of shape (n, rows * cols, h, w, 3), optional
            Write the bags into this array instead of a new one, e.g. a
            :func:`numpy.lib.format.open_memmap` file for bags larger than the memory
            (:func:`tile_to_memmap` does this), or a slice ``bags[start:stop]`` of a
            larger one to tile a data set in chunks; it must be writeable and C-contiguous.

        Returns
        -------
        bags : ndarray of shape (n, rows * cols, h, w, 3), dtype uint8
            Tiles in row-major order; ``out`` if given, else a new array (never a view of
            ``X``).
        """
        check_is_fitted(self, "n_tiles_")
        self._check_params()
        X = _paths_as_list(X)
        n_images = len(X)
        if out is not None:
            _check_out(out, n_images)
        position = 0
        for batch in self._iter_batches(X):
            shape = self._bag_shape(*batch.shape[1:3])
            if out is None:
                # Tiles are written straight into this one array: peak memory is the input
                # plus the output plus one batch of temporaries.
                out = np.empty((n_images, *shape, 3), dtype=np.uint8)
            elif shape != out.shape[1:4] and position == 0:
                raise ValueError(
                    f"out has bags of shape {out.shape[1:]} but the images give {(*shape, 3)}."
                )
            elif shape != out.shape[1:4]:
                raise ValueError(
                    f"Image {position} gives tiles of shape {shape[1:]} but earlier images "
                    f"gave {out.shape[2:4]}; set tile_size=(h, w) for images of mixed sizes."
                )
            self._tile_batch(batch, out[position : position + len(batch)])
            position += len(batch)
            del batch  # the loop variable would keep this batch alive while the next decodes
        assert out is not None
        return out

    def inverse_transform(self, bags: Any) -> np.ndarray:
        """Stitch bags of tiles back into mosaic images ``(n, rows * h, cols * w, 3)``.

        Without ``tile_size`` and with a size divisible by the grid this gives back the
        original images; otherwise it gives the mosaic of the (cropped or resized) tiles, which
        is what the model sees.
        """
        check_is_fitted(self, "n_tiles_")
        bags = check_bags(bags)
        rows, cols = self.grid
        n, n_tiles, tile_h, tile_w, channels = bags.shape
        if n_tiles != rows * cols:
            raise ValueError(f"Bags hold {n_tiles} tiles but grid {self.grid} has {rows * cols}.")
        blocks = bags.reshape(n, rows, cols, tile_h, tile_w, channels).transpose(0, 1, 3, 2, 4, 5)
        return np.ascontiguousarray(blocks).reshape(n, rows * tile_h, cols * tile_w, channels)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True  # images are 4-D; the closest tag sklearn has
        return tags


def _paths_as_list(X: Any) -> Any:
    """An array of file names (``load_breakhis(...).filenames``) as the list of paths it is."""
    if isinstance(X, np.ndarray) and X.dtype.kind in "US" and X.ndim == 1:
        return X.tolist()
    return X


def _decode(item: Any, index: int) -> np.ndarray:
    """One list item (file path, PIL image or array) as a uint8 ``(H, W, 3)`` array."""
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        return load_rgb(item)
    return one_image(item, index)


def _check_out(out: Any, n_images: int) -> None:
    """Reject an ``out=`` buffer the tiles cannot be written into, before decoding any image."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array (or memmap), got {type(out).__name__}.")
    if out.dtype != np.uint8 or out.ndim != 5 or out.shape[-1] != 3 or len(out) != n_images:
        raise ValueError(
            f"out must be a uint8 array of shape ({n_images}, T, h, w, 3), got dtype "
            f"{out.dtype} and shape {out.shape}."
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only; open a memmap with mode='w+' or 'r+'.")
    if not out.flags.c_contiguous:
        # The tilers write through reshaped views of `out`; on a strided array reshape would
        # copy, and the tiles would silently go to the copy.
        raise ValueError("out must be C-contiguous (a slice along the first axis is).")


def tile_to_memmap(
    X: Any, filename: str | os.PathLike[str], tiler: SubImageTiler | None = None
) -> np.memmap:
    """Tile images (typically file paths) into a ``.npy`` file on disk, memory-mapped.

    For data sets whose tiles do not fit in memory (the four BreakHis magnifications, 7909
    images, are 10.7 GB of 224x224 tiles): the images are decoded ``tiler.batch_size`` at a
    time and their tiles written into a :func:`numpy.lib.format.open_memmap` file, so the
    resident memory is one batch, whatever the number of images. The estimators then train
    and predict on the returned array (or on ``np.load(filename, mmap_mode="r")`` in a later
    session) without loading it whole: they read it one batch of tiles at a time, and the
    pages read are file-backed, so the kernel can drop them under memory pressure.

    Parameters
    ----------
    X : list of image file paths, or images as :meth:`SubImageTiler.transform` takes
        The images to tile.
    filename : str or path-like
        The ``.npy`` file to create (overwritten if it exists).
    tiler : SubImageTiler, optional
        The tiler to use, fitted or not (an unfitted one is fitted on ``X``, reading only the
        file headers). Default: ``SubImageTiler(grid=(3, 3), tile_size=(224, 224))``, the
        paper's tiles.

    Returns
    -------
    bags : numpy.memmap of shape (n, rows * cols, h, w, 3), dtype uint8
        The bags, opened read-write on ``filename`` and flushed to it.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skhybrid.tiling import tile_to_memmap
    >>> images = np.zeros((2, 460, 700, 3), dtype=np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     bags = tile_to_memmap(images, os.path.join(tmp, "bags.npy"))
    ...     print(bags.shape, np.load(os.path.join(tmp, "bags.npy"), mmap_mode="r").shape)
    ...     del bags
    (2, 9, 224, 224, 3) (2, 9, 224, 224, 3)
    """
    if tiler is None:
        tiler = SubImageTiler(grid=(3, 3), tile_size=(224, 224))
    try:
        check_is_fitted(tiler, "n_tiles_")
    except NotFittedError:
        tiler.fit(X)
    if tiler.tile_shape_ is None:  # pragma: no cover - fit requires tile_size then
        raise ValueError("Images of different sizes need a tiler with tile_size=(h, w).")
    if tiler.tile_size is None and tiler.image_shape_ is not None:
        shape = tiler._bag_shape(*tiler.image_shape_)
    else:
        shape = (tiler.n_tiles_, *tiler.tile_shape_)
    bags = np.lib.format.open_memmap(
        os.fspath(filename), mode="w+", dtype=np.uint8, shape=(len(X), *shape, 3)
    )
    tiler.transform(X, out=bags)
    bags.flush()
    return bags


# -- bags <-> tiles -------------------------------------------------------------------------------
def broadcast_bag_labels(y: Any, n_bags: int, n_tiles: int) -> np.ndarray:
    """Return one label per tile from image labels ``(n,)`` or tile labels ``(n, T)``.

    Parameters
    ----------
    y : array-like of shape (n,) or (n, T)
        Image labels (inherited by every tile) or tile labels.
    n_bags, n_tiles : int
        Number of bags and tiles per bag.

    Returns
    -------
    tile_labels : ndarray of shape (n * T,)
    """
    y = np.asarray(y)
    if y.ndim == 1 and len(y) == n_bags:
        return np.repeat(y, n_tiles)
    if y.shape == (n_bags, n_tiles):
        return y.reshape(-1)
    raise ValueError(
        f"y must have shape ({n_bags},) (one label per image) or ({n_bags}, {n_tiles}) "
        f"(one label per tile), got {y.shape}."
    )


def flatten_bags(bags: Any, y: Any = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Flatten bags ``(n, T, ...)`` into tiles ``(n * T, ...)`` with their image index.

    Parameters
    ----------
    bags : array-like of shape (n, T, ...)
        Bags of tiles (or of per-tile values such as features).
    y : array-like of shape (n,) or (n, T), optional
        Image labels (broadcast to the tiles) or tile labels.

    Returns
    -------
    tiles : ndarray of shape (n * T, ...)
        A view of ``bags`` when it is contiguous.
    tile_y : ndarray of shape (n * T,) or None
    groups : ndarray of shape (n * T,)
        The index of each tile's image: pass it as ``groups`` to a group-aware splitter.

    Examples
    --------
    >>> import numpy as np
    >>> tiles, tile_y, groups = flatten_bags(np.zeros((2, 9, 4, 4, 3)), y=[0, 1])
    >>> tiles.shape, tile_y[:3], groups[8:11]
    ((18, 4, 4, 3), array([0, 0, 0]), array([0, 1, 1]))
    """
    bags = np.asarray(bags)
    if bags.ndim < 2:
        raise ValueError(f"bags must have shape (n, T, ...), got {bags.shape}.")
    n_bags, n_tiles = bags.shape[:2]
    tiles = bags.reshape(n_bags * n_tiles, *bags.shape[2:])
    groups = np.repeat(np.arange(n_bags), n_tiles)
    tile_y = None if y is None else broadcast_bag_labels(y, n_bags, n_tiles)
    return tiles, tile_y, groups


def unflatten_tiles(values: Any, n_tiles: int) -> np.ndarray:
    """Fold per-tile values ``(n * T, ...)`` back into ``(n, T, ...)``.

    Parameters
    ----------
    values : array-like of shape (n * T, ...)
        Per-tile outputs (labels, probabilities, features) in the order of :func:`flatten_bags`.
    n_tiles : int
        Tiles per bag ``T``.

    Returns
    -------
    values : ndarray of shape (n, T, ...)
    """
    values = np.asarray(values)
    if n_tiles < 1 or len(values) % n_tiles:
        raise ValueError(f"{len(values)} tile values cannot be split into bags of {n_tiles}.")
    return values.reshape(len(values) // n_tiles, n_tiles, *values.shape[1:])
