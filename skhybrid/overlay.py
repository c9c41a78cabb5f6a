"""A picture of tile predictions: the tile grid drawn over the image, tinted by probability."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._images import load_rgb
from .tiling import tile_edges

__all__ = ["render_tile_overlay", "save_tile_overlay"]


def render_tile_overlay(
    image: np.ndarray,
    tile_scores: Any,
    *,
    grid_shape: tuple[int, int] | None = None,
    crop: str = "crop",
    alpha: float = 0.45,
) -> np.ndarray:
    """Draw the tile grid over an image, each tile tinted red by its score.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        The whole image.
    tile_scores : array-like of shape (rows, cols)
        Per-tile scores in [0, 1], e.g. the probability of malignancy.
    grid_shape : (rows, cols), optional
        Defaults to the shape of ``tile_scores``.
    crop : {"crop", "resize", "error"}, default="crop"
        The tiler's ``remainder``; the grid is drawn where the tiler cut it
        (:func:`skhybrid.tiling.tile_edges`): with ``"crop"`` the remainder pixels are left
        out, trimmed evenly; with ``"resize"`` the grid spans the whole image; ``"error"``
        raises ``ValueError`` for an image not divisible by the grid, as the tiler does.
    alpha : float, default=0.45
        Opacity of the tint at score 1.

    Returns
    -------
    overlay : ndarray of shape (H, W, 3), uint8
    """
    from PIL import Image, ImageDraw

    scores = np.asarray(tile_scores, dtype=float)
    rows, cols = grid_shape or scores.shape
    scores = scores.reshape(rows, cols)
    height, width = image.shape[:2]
    # The grid where the tiler cut it: one geometry for the tiler, the overlay and the data.
    row_edges, col_edges = tile_edges(height, width, (rows, cols), remainder=crop)
    ys, xs = row_edges.tolist(), col_edges.tolist()
    canvas = image.astype(np.float32)
    red = np.array([220.0, 30.0, 30.0])
    for r in range(rows):
        for c in range(cols):
            weight = alpha * float(np.clip(scores[r, c], 0.0, 1.0))
            block = canvas[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]
            block[...] = (1 - weight) * block + weight * red
    picture = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for y in ys:
        draw.line([(xs[0], y), (xs[-1], y)], fill=(255, 255, 255), width=2)
    for x in xs:
        draw.line([(x, ys[0]), (x, ys[-1])], fill=(255, 255, 255), width=2)
    for r in range(rows):
        for c in range(cols):
            text = f"{scores[r, c]:.2f}"
            position = (xs[c] + 6, ys[r] + 4)
            draw.text((position[0] + 1, position[1] + 1), text, fill=(0, 0, 0))
            draw.text(position, text, fill=(255, 255, 255))
    return np.asarray(picture)


def save_tile_overlay(
    image: str | os.PathLike[str] | np.ndarray,
    tile_scores: Any,
    path: str | os.PathLike[str],
    **kwargs: Any,
) -> Path:
    """Render :func:`render_tile_overlay` for an image (array or file) and save it as PNG.

    Returns
    -------
    path : Path
    """
    from PIL import Image

    array = load_rgb(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    path = Path(path)
    Image.fromarray(render_tile_overlay(array, tile_scores, **kwargs)).save(path)
    return path
