"""RepeatedStratifiedGroupKFold: patient-wise, stratified, repeated, seeded, a scikit-learn cv."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_validate

from skhybrid.model_selection import RepeatedStratifiedGroupKFold


def patients_data(n_patients: int = 24, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Single-class patients (as on BreakHis) with 3 to 12 images each, a third benign."""
    rng = np.random.RandomState(seed)
    sizes = rng.randint(3, 13, size=n_patients)
    groups = np.repeat(np.arange(n_patients), sizes)
    patient_class = (np.arange(n_patients) % 3 != 0).astype(int)
    y = patient_class[groups]
    X = rng.normal(size=(len(y), 3)) + y[:, None]
    return X, y, groups


def test_no_patient_on_both_sides_and_every_image_tested_once_per_repeat() -> None:
    X, y, groups = patients_data()
    cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=3, random_state=0)
    splits = list(cv.split(X, y, groups))
    assert len(splits) == cv.get_n_splits() == 12
    for train, test in splits:
        assert set(groups[train]).isdisjoint(groups[test])
        assert len(train) + len(test) == len(y)
    for repeat in range(3):
        tests = np.concatenate([test for _, test in splits[4 * repeat : 4 * repeat + 4]])
        assert np.array_equal(np.sort(tests), np.arange(len(y)))


def test_stratifies_every_test_fold_holds_both_classes() -> None:
    X, y, groups = patients_data()
    cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=5, random_state=1)
    overall = y.mean()
    for _, test in cv.split(X, y, groups):
        assert set(y[test]) == {0, 1}
        assert abs(y[test].mean() - overall) < 0.25


def test_repeats_differ_and_a_seed_is_deterministic() -> None:
    X, y, groups = patients_data()

    def fold_patients(cv: RepeatedStratifiedGroupKFold) -> list[frozenset]:
        return [frozenset(groups[test]) for _, test in cv.split(X, y, groups)]

    folds = fold_patients(RepeatedStratifiedGroupKFold(4, 3, random_state=0))
    repeats = [set(folds[4 * r : 4 * r + 4]) for r in range(3)]
    assert repeats[0] != repeats[1] and repeats[1] != repeats[2]
    assert folds == fold_patients(RepeatedStratifiedGroupKFold(4, 3, random_state=0))
    assert folds != fold_patients(RepeatedStratifiedGroupKFold(4, 3, random_state=1))
    # Each repeat is StratifiedGroupKFold(shuffle=True) with the repeat's derived seed.
    seeds = RepeatedStratifiedGroupKFold(4, 3, random_state=0).repeat_seeds()
    second = StratifiedGroupKFold(4, shuffle=True, random_state=int(seeds[1]))
    assert [frozenset(groups[te]) for _, te in second.split(X, y, groups)] == folds[4:8]


def test_works_as_cv_in_cross_validate_and_grid_search() -> None:
    X, y, groups = patients_data()
    cv = RepeatedStratifiedGroupKFold(n_splits=3, n_repeats=2, random_state=0)
    scores = cross_validate(LogisticRegression(), X, y, groups=groups, cv=cv)
    assert scores["test_score"].shape == (6,)
    assert scores["test_score"].mean() > 0.6  # the features carry the class
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=cv).fit(X, y, groups=groups)
    assert search.n_splits_ == 6


def test_clear_errors() -> None:
    X, y, groups = patients_data(n_patients=9)  # 3 benign patients
    cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=2)
    with pytest.raises(ValueError, match="needs groups="):
        next(cv.split(X, y))
    with pytest.raises(ValueError, match=r"Class 0 is present in only 3 group\(s\).*n_splits=4"):
        next(cv.split(X, y, groups))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        next(cv.split(X, y, groups[:-1]))
    bad = groups.astype(float)
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        next(RepeatedStratifiedGroupKFold(3).split(X, y, bad))
    with pytest.raises(ValueError, match="n_splits"):
        RepeatedStratifiedGroupKFold(n_splits=1).get_n_splits()
    with pytest.raises(ValueError, match="n_repeats"):
        next(RepeatedStratifiedGroupKFold(n_repeats=0).split(X, y, groups))


def test_repr_pickle_and_clone_of_an_estimator_holding_it() -> None:
    cv = RepeatedStratifiedGroupKFold(n_splits=3, n_repeats=2, random_state=7)
    assert repr(cv) == "RepeatedStratifiedGroupKFold(n_repeats=2, n_splits=3, random_state=7)"
    X, y, groups = patients_data()
    restored = pickle.loads(pickle.dumps(cv))
    assert [t.tolist() for _, t in restored.split(X, y, groups)] == [
        t.tolist() for _, t in cv.split(X, y, groups)
    ]
    search = clone(GridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=cv))
    assert search.cv.n_splits == 3 and search.cv.random_state == 7
