"""Turning tile probabilities ``(n, T, k)`` into image probabilities ``(n, k)``."""

from __future__ import annotations

import numpy as np

__all__ = ["AGGREGATIONS", "aggregate_proba"]

AGGREGATIONS = ("mean", "max", "vote", "mil")


def aggregate_proba(
    tile_proba: np.ndarray, aggregation: str, *, negative_index: int = 0
) -> np.ndarray:
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

        ``"mil"``: the multiple-instance rule that self-learning assumes (an image is
        positive as soon as one of its tiles is): the class in column ``negative_index`` is the
        negative one (resolved by :func:`skhybrid.class_roles.resolve_class_roles`), and
        ``P(negative) = min_t p_t(negative)``; with
        two classes ``P(positive) = max_t p_t(positive)``. With more classes the positive mass
        ``1 - P(negative)`` is shared in proportion to each class's largest tile probability.
        After self-learning, tiles of benign tissue in a malignant image are (correctly) called
        benign, so the mean under-calls such images; this rule does not.

    negative_index : int, default=0
        Column of the negative class, used by ``"mil"`` only.

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
    if aggregation == "mil":
        positive = np.arange(tile_proba.shape[2]) != negative_index
        negative = tile_proba[:, :, negative_index].min(axis=1)
        peak = tile_proba[:, :, positive].max(axis=1)
        total = peak.sum(axis=1, keepdims=True)
        share = np.divide(peak, total, out=np.full_like(peak, 1.0 / peak.shape[1]), where=total > 0)
        out = np.empty(tile_proba.shape[::2])
        out[:, negative_index] = negative
        out[:, positive] = (1.0 - negative)[:, None] * share
        return out
    raise ValueError(f"Unknown aggregation {aggregation!r}; valid are {list(AGGREGATIONS)}.")
