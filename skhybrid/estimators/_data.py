"""Inputs of the estimators: images/tiles or bags to tiles, labels, groups, batches, splits.

Tiles stay uint8 numpy arrays until a batch is taken: one fancy-indexing gather per batch
(:meth:`ArrayDataset.__getitems__`), no per-sample Python and no float copy on the host.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from .._images import check_bags, check_image_array
from ..tiling import flatten_bags
from ._runtime import autocast

__all__ = [
    "ArrayDataset",
    "FitInputs",
    "batch_passthrough",
    "batch_tensor",
    "encode_labels",
    "group_train_valid_split",
    "pooled_features_into",
    "prepare_fit_inputs",
    "prepare_predict_tiles",
]


@dataclass
class FitInputs:
    """Flattened training data: ``tiles (N, h, w, 3)``, ``y (N,)``, ``groups (N,)``."""

    tiles: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None


def prepare_fit_inputs(X: Any, y: Any, groups: Any = None) -> FitInputs:
    """Validate ``X`` (images/tiles ``(n, H, W, 3)`` or bags ``(n, T, h, w, 3)``) and flatten.

    With bags, ``y`` is per image ``(n,)`` (broadcast to its tiles) or per tile ``(n, T)``, and
    the groups of the tiles are the image index, or ``groups[image]`` when per-image groups
    (e.g. patients) are given. With images/tiles, ``groups`` is optional, one per row.
    """
    array = np.asarray(X)
    if y is None:
        raise ValueError(
            "This classifier requires y to be passed, but the target y is None: give one "
            "label per image (or, for bags, per tile)."
        )
    if array.ndim == 5:
        bags = check_bags(array)
        tiles, tile_y, image_index = flatten_bags(bags, y)
        if groups is None:
            tile_groups = image_index
        else:
            groups = np.asarray(groups)
            if groups.shape != (len(bags),):
                raise ValueError(
                    f"With bags, groups must have one value per image ({len(bags)},), "
                    f"got shape {groups.shape}."
                )
            tile_groups = groups[image_index]
        return FitInputs(tiles, tile_y, tile_groups)
    tiles = check_image_array(array, what="images (or tiles)")
    y = np.asarray(y)
    if y.shape != (len(tiles),):
        raise ValueError(f"y must have one label per image, shape ({len(tiles)},), got {y.shape}.")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(tiles),):
            raise ValueError(f"groups must have shape ({len(tiles)},), got {groups.shape}.")
    return FitInputs(tiles, y, groups)


def prepare_predict_tiles(X: Any) -> tuple[np.ndarray, int | None]:
    """Return ``(tiles (N, h, w, 3), T)`` with ``T=None`` for image/tile input."""
    array = np.asarray(X)
    if array.ndim == 5:
        bags = check_bags(array)
        return flatten_bags(bags)[0], bags.shape[1]
    return check_image_array(array, what="images (or tiles)"), None


def batch_tensor(array: np.ndarray) -> torch.Tensor:
    """One batch of rows as a CPU tensor, sharing memory with ``array`` where it can.

    A contiguous slice (consecutive rows, as in prediction) is wrapped, not copied. A
    read-only array (e.g. bags opened with ``np.load(path, mmap_mode="r")``, see
    :func:`~skhybrid.tiling.tile_to_memmap`) gets a copy of this batch only: torch cannot
    wrap read-only memory safely, and copying one batch keeps the whole array on disk.
    """
    batch = np.ascontiguousarray(array)
    if not batch.flags.writeable:
        batch = batch.copy()
    return torch.from_numpy(batch)


def pooled_features_into(
    out: torch.Tensor,
    module: torch.nn.Module,
    tiles: np.ndarray,
    *,
    batch_size: int,
    device: str,
    precision: str,
) -> torch.Tensor:
    """Fill ``out`` (N, C) with the pooled CNN features of uint8 ``tiles`` (N, h, w, 3).

    Batches of ``batch_size`` go to ``device`` as uint8 and through
    ``module.pooled_features`` without autograd; ``out`` may live on any device and dtype
    (the copy converts). Returns ``out``.
    """
    with torch.no_grad(), autocast(device, precision):
        for start in range(0, len(tiles), batch_size):
            batch = batch_tensor(tiles[start : start + batch_size])
            features = module.pooled_features(batch.to(device, non_blocking=True))
            out[start : start + len(batch)] = features
    return out


def encode_labels(y: np.ndarray, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, codes)``: the class labels and ``y`` as int64 indices into them.

    ``classes`` (e.g. the ``classes`` parameter) fixes the label set and its order; by default
    it is ``np.unique(y)`` as in scikit-learn.
    """
    if y.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y.shape}.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinite labels; give every image a class label.")
    classes = np.unique(y) if classes is None else np.asarray(classes)
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    position = np.searchsorted(sorted_classes, y)
    position = np.clip(position, 0, len(classes) - 1)
    unknown = sorted_classes[position] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels {np.unique(y[unknown])[:5].tolist()} that are not in "
            f"classes {classes.tolist()}."
        )
    return classes, order[position].astype(np.int64)


class ArrayDataset(torch.utils.data.Dataset):
    """A torch dataset over uint8 arrays that serves whole batches with one gather.

    ``DataLoader`` calls :meth:`__getitems__` with the indices of a batch when it exists, so
    with :func:`batch_passthrough` as ``collate_fn`` a batch is ``X[indices]`` (a view for
    consecutive indices, as in prediction) wrapped with ``torch.from_numpy``.

    Parameters
    ----------
    X : ndarray of shape (N, ...)
    y : ndarray of shape (N,), optional
        Integer class codes; missing targets are served as zeros (skorch's convention).
    with_index : bool, default=False
        When True, a batch's inputs are ``{"images": X[indices], "index": indices}``: the
        estimators' ``fit`` serves the training data so, for the
        :class:`~skhybrid.estimators._callbacks.FeatureCache` callback (features cached per
        row in phase 1, with a frozen CNN).
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray | None = None, *, with_index: bool = False
    ) -> None:
        self.X = X
        self.y = None if y is None else np.asarray(y, dtype=np.int64)
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor]:
        x, y = self.__getitems__([index])
        if isinstance(x, dict):
            return {key: value[0] for key, value in x.items()}, y[0]
        return x[0], y[0]

    def __getitems__(self, indices: Any) -> tuple[Any, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        n = len(index)
        if n and index[-1] - index[0] == n - 1 and np.all(np.diff(index) == 1):
            selector: Any = slice(int(index[0]), int(index[0]) + n)
        else:
            selector = index
        x: Any = batch_tensor(self.X[selector])
        if self.with_index:
            x = {"images": x, "index": torch.from_numpy(index)}
        if self.y is None:
            return x, torch.zeros(n, dtype=torch.int64)
        return x, torch.from_numpy(self.y[selector].copy())


def batch_passthrough(batch: Any) -> Any:
    """``collate_fn`` for datasets whose ``__getitems__`` already returns a batch."""
    return batch


def group_train_valid_split(
    y: np.ndarray, groups: np.ndarray | None, valid_size: float, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/validation split that never puts one group on both sides.

    Stratified by class (the first fold of ``StratifiedGroupKFold`` with
    ``round(1 / valid_size)`` folds, so the validation share is about ``valid_size``); when
    there are too few groups for that many folds, a plain ``GroupShuffleSplit``. Without
    groups, every sample is its own group.
    """
    n = len(y)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(
            "The internal validation split needs at least 2 groups (images); got "
            f"{n_groups}. Pass more images or valid_size=None to train without validation."
        )
    n_splits = max(2, round(1.0 / valid_size))
    dummy = np.zeros(n)
    if n_groups >= n_splits:
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
        with warnings.catch_warnings():
            # "The least populated class has only k members": stratification is best effort.
            warnings.simplefilter("ignore", UserWarning)
            train, valid = next(splitter.split(dummy, y, groups))
        if len(train) and len(valid):
            return train, valid
    splitter = GroupShuffleSplit(n_splits=1, test_size=valid_size, random_state=random_state)
    return next(splitter.split(dummy, y, groups))
