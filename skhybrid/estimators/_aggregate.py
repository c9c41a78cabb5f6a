"""Turning tile probabilities ``(n, T, k)`` into image probabilities ``(n, k)``."""

from __future__ import annotations

import numpy as np

__all__ = ["AGGREGATIONS", "aggregate_proba"]

AGGREGATIONS = ("mean", "max", "vote")


def aggregate_proba(tile_proba: np.ndarray, aggregation: str) -> np.ndarray:
    """Aggregate per-tile class probabilities of each image; every output row sums to 1.

    Parameters
    ----------
    tile_proba : ndarray of shape (n, T, k)
    aggregation : {"mean", "max", "vote"}
        ``"mean"``: the average of the T tile distributions. ``"max"``: for each class the
        largest probability any tile gives it, then the k values divided by their sum (an
        image scores high for a class as soon as one tile is confident about it; with two
        classes, ``max_t p_t(c) / (max_t p_t(c) + max_t p_t(c'))``). ``"vote"``: the fraction
        of tiles whose most probable class is c (ties between classes within a tile go to
        the first class in ``classes_``); ``predict`` then returns the majority class, ties
        between classes again going to the first.

    Returns
    -------
    ndarray of shape (n, k)
    """
    if aggregation == "mean":
        return tile_proba.mean(axis=1)
    if aggregation == "max":
        peak = tile_proba.max(axis=1)
        return peak / peak.sum(axis=1, keepdims=True)
    if aggregation == "vote":
        n, n_tiles, k = tile_proba.shape
        winners = tile_proba.argmax(axis=2)
        counts = np.zeros((n, k))
        np.add.at(counts, (np.repeat(np.arange(n), n_tiles), winners.ravel()), 1.0)
        return counts / n_tiles
    raise ValueError(f"Unknown aggregation {aggregation!r}; valid are {list(AGGREGATIONS)}.")
