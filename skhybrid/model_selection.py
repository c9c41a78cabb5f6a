"""Cross-validation splitters for patient-wise evaluation.

scikit-learn has ``RepeatedStratifiedKFold`` and ``StratifiedGroupKFold`` but no repeated,
stratified, *grouped* splitter. On BreakHis one patient-wise split is not enough: with 4 folds
the ROC AUC varies by about +-0.10 between folds, more than between models, so a model ranking
needs several repeats of the folds (and intervals, see :mod:`skhybrid.evaluation`).
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.model_selection._split import BaseCrossValidator, GroupsConsumerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_parameter_constraints
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_consistent_length, column_or_1d

__all__ = ["RepeatedStratifiedGroupKFold"]


class RepeatedStratifiedGroupKFold(GroupsConsumerMixin, BaseCrossValidator):
    """Stratified group k-fold, repeated with a different shuffle of the groups each time.

    Each repeat is a :class:`sklearn.model_selection.StratifiedGroupKFold` with
    ``shuffle=True`` and its own integer seed (drawn from ``random_state``), so no group
    (patient) is ever on both sides of a split and the folds keep the class proportions as
    far as whole groups allow. Every image is in exactly one test fold per repeat.

    Usable as ``cv=`` in :func:`~sklearn.model_selection.cross_validate`,
    :class:`~sklearn.model_selection.GridSearchCV`, ... (pass ``groups=``).

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds per repeat; at least 2.
    n_repeats : int, default=10
        Number of repeats; at least 1.
    random_state : int, RandomState instance or None, default=None
        Seeds the repeats. An int gives the same folds on every call of :meth:`split`.

    Notes
    -----
    ``StratifiedGroupKFold`` assigns groups greedily, largest class imbalance (most images)
    first; the shuffle only reorders groups that tie. Repeats therefore differ less than fully
    random patient permutations would, but they stay balanced, which small data sets need.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    >>> patients = np.array([1, 1, 2, 3, 4, 4, 5, 6])
    >>> cv = RepeatedStratifiedGroupKFold(n_splits=2, n_repeats=3, random_state=0)
    >>> cv.get_n_splits()
    6
    >>> all(set(patients[tr]).isdisjoint(patients[te]) for tr, te in cv.split(y, y, patients))
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "n_repeats": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_splits: int = 5, n_repeats: int = 10, random_state: Any = None) -> None:
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.random_state = random_state

    def _validate_params(self) -> None:
        # Splitters are not estimators (no get_params), so validate the three attributes here.
        validate_parameter_constraints(
            self._parameter_constraints,
            {
                "n_splits": self.n_splits,
                "n_repeats": self.n_repeats,
                "random_state": self.random_state,
            },
            caller_name=type(self).__name__,
        )

    def repeat_seeds(self) -> np.ndarray:
        """The integer seed of each repeat's ``StratifiedGroupKFold``, shape ``(n_repeats,)``.

        Deterministic for an int ``random_state``; a RandomState instance is advanced.
        """
        self._validate_params()
        rng = check_random_state(self.random_state)
        return rng.randint(np.iinfo(np.int32).max, size=self.n_repeats)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of splits, ``n_splits * n_repeats``; the arguments are ignored."""
        self._validate_params()
        return self.n_splits * self.n_repeats

    def split(self, X: Any, y: Any, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate train and test indices, repeat after repeat.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples; only their number is used.
        y : array-like of shape (n_samples,)
            Class labels, used for stratification.
        groups : array-like of shape (n_samples,)
            Group (patient) of each sample. Required.

        Yields
        ------
        train, test : ndarray of int
            Indices; the folds of repeat ``r`` are splits ``r * n_splits`` to
            ``(r + 1) * n_splits - 1``.

        Raises
        ------
        ValueError
            When ``groups`` is missing or has missing values, the lengths differ, ``y`` is
            not a classification target, or a class is present in fewer than ``n_splits``
            groups (some test fold could not hold that class).
        """
        y, groups = self._check_split_input(X, y, groups)
        for seed in self.repeat_seeds():
            folds = StratifiedGroupKFold(self.n_splits, shuffle=True, random_state=int(seed))
            for train, test in folds.split(np.zeros(len(y)), y, groups):
                yield np.asarray(train, dtype=int), np.asarray(test, dtype=int)

    def _check_split_input(self, X: Any, y: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
        self._validate_params()
        if groups is None:
            raise ValueError(
                f"{type(self).__name__}.split needs groups= (the patient of each image): "
                "without them a patient's images could land on both sides of a split."
            )
        if y is None:
            raise ValueError(f"{type(self).__name__}.split needs y to stratify.")
        y = column_or_1d(np.asarray(y), warn=True)
        groups = column_or_1d(np.asarray(groups), warn=True)
        check_consistent_length(X, y, groups)
        if groups.dtype.kind == "f" and not np.all(np.isfinite(groups)):
            raise ValueError("groups contains NaN or infinity; every sample needs a group id.")
        if groups.dtype.kind == "O" and any(g is None for g in groups):
            raise ValueError("groups contains None; every sample needs a group id.")
        target = type_of_target(y)
        if target not in ("binary", "multiclass"):
            raise ValueError(f"y must be a binary or multiclass target; got {target!r}.")
        classes, y_idx = np.unique(y, return_inverse=True)
        _, group_idx = np.unique(groups, return_inverse=True)
        for k, label in enumerate(classes.tolist()):
            n_groups = len(np.unique(group_idx[y_idx == k]))
            if n_groups < self.n_splits:
                raise ValueError(
                    f"Class {label!r} is present in only {n_groups} group(s), fewer than "
                    f"n_splits={self.n_splits}: some test folds would have no {label!r} "
                    f"sample. Use n_splits <= {n_groups}."
                )
        return y, groups
