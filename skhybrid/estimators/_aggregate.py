"""Turning tile probabilities ``(n, T, k)`` into image probabilities ``(n, k)``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["AGGREGATIONS", "aggregate_proba"]

AGGREGATIONS = ("mean", "max", "vote", "mil")


def aggregate_proba(
    tile_proba: np.ndarray, aggregation: str, *, negative_index: int | Sequence[int] = 0
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
        positive as soon as one of its tiles is): the classes in the columns ``negative_index``
        are the negative set (benign tissue; one class, or the benign subtypes, resolved by
        :func:`skhybrid.class_roles.resolve_negative_classes`), and
        ``P(negative set) = min_t sum_{c in set} p_t(c)``: an image is benign only as far as
        its least benign tile is. That mass is shared among the negative classes in proportion
        to their mean tile probability, the positive mass ``1 - P(negative set)`` among the
        other classes in proportion to each one's largest tile probability. With two classes
        ``P(positive) = max_t p_t(positive)``.
        After self-learning, tiles of benign tissue in a malignant image are (correctly) called
        benign, so the mean under-calls such images; this rule does not.

    negative_index : int or sequence of int, default=0
        Column(s) of the negative class or classes, used by ``"mil"`` only.

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
        k = tile_proba.shape[2]
        negative = np.zeros(k, dtype=bool)
        negative[np.atleast_1d(negative_index)] = True
        if negative.all():
            raise ValueError("'mil' needs at least one positive (non-negative) class.")
        p_negative = tile_proba[:, :, negative].sum(axis=2).min(axis=1)
        out = np.empty(tile_proba.shape[::2])
        out[:, negative] = p_negative[:, None] * _shares(tile_proba[:, :, negative].mean(axis=1))
        out[:, ~negative] = (1.0 - p_negative)[:, None] * _shares(
            tile_proba[:, :, ~negative].max(axis=1)
        )
        return out
    raise ValueError(f"Unknown aggregation {aggregation!r}; valid are {list(AGGREGATIONS)}.")


def _shares(weights: np.ndarray) -> np.ndarray:
    """Rows of ``weights`` (n, m) divided by their sum; uniform where a row sums to 0."""
    total = weights.sum(axis=1, keepdims=True)
    uniform = np.full_like(weights, 1.0 / weights.shape[1])
    return np.divide(weights, total, out=uniform, where=total > 0)
