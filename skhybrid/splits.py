"""Evaluation protocols: honest patient-wise splits, and the paper's leaky tile split.

On BreakHis the images of one patient (slide) share stain, scanner session and tissue, so a
model evaluated on images of patients it was trained on looks far better than it is (docs/design.md
measured ROC AUC 0.904 patient-wise against 0.994 with a random split of images). The paper's
99.76% comes from a random split of *tiles*, which even puts tiles of the same image on both
sides. skhybrid therefore splits by patient unless told otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["PROTOCOLS", "patient_split_indices", "random_tile_split_indices"]

#: Names of the evaluation protocols used by the command line and the reproduction script.
PROTOCOLS = ("patient", "random-tile")


def patient_split_indices(
    y: Any, groups: Any, *, test_size: float = 0.25, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split images into train and test sets with no patient on both sides.

    The split is stratified by class over patients: of the patients of each class, about
    ``test_size`` (at least one, never all) go to the test set, so both sets hold both classes
    whenever each class has at least two patients.

    Parameters
    ----------
    y : array-like of shape (n_images,)
        Image labels.
    groups : array-like of shape (n_images,)
        Patient (or slide) id of each image, e.g. ``load_breakhis(...).patient``.
    test_size : float, default=0.25
        Approximate fraction of patients in the test set, in (0, 0.5].
    random_state : int, RandomState instance or None, default=None
        Seed of the patient shuffle.

    Returns
    -------
    train, test : ndarray of int
        Image indices.

    Raises
    ------
    ValueError
        When there are fewer than two patients, or ``test_size`` is out of range.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    if len(y) != len(groups):
        raise ValueError(f"y has {len(y)} entries but groups has {len(groups)}.")
    if not 0.0 < test_size <= 0.5:
        raise ValueError(f"test_size must be in (0, 0.5], got {test_size!r}.")
    n_patients = len(np.unique(groups))
    if n_patients < 2:
        raise ValueError(
            f"A patient-wise split needs at least 2 patients, got {n_patients}; "
            "pass the patient ids as groups."
        )
    rng = check_random_state(random_state)
    # Stratify over patients, not images: each class sends round(test_size * its patients)
    # patients (at least one when it has two) to the test set, so both sides hold both classes
    # whenever every class has two patients. A patient's class is the label of most of its
    # images (BreakHis patients have one class).
    patient_ids, patient_of_image = np.unique(groups, return_inverse=True)
    classes, image_class = np.unique(y, return_inverse=True)
    votes = np.zeros((len(patient_ids), len(classes)), dtype=np.int64)
    np.add.at(votes, (patient_of_image, image_class), 1)
    patient_class = votes.argmax(axis=1)
    test_patients: list[np.ndarray] = []
    for c in range(len(classes)):
        members = np.flatnonzero(patient_class == c)
        n_test = round(test_size * len(members))
        if len(members) >= 2:
            n_test = min(max(1, n_test), len(members) - 1)
        test_patients.append(rng.permutation(members)[:n_test])
    chosen = np.concatenate(test_patients)
    if len(chosen) == 0:  # one patient per class: hold out one patient at random
        chosen = rng.permutation(len(patient_ids))[:1]
    if len(chosen) == len(patient_ids):
        chosen = chosen[:-1]
    is_test = np.isin(patient_of_image, chosen)
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    return np.sort(train), np.sort(test)


def random_tile_split_indices(
    n_images: int, n_tiles: int, *, test_size: float = 0.25, random_state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's protocol: a random split of *tiles*, ignoring images and patients.

    .. warning:: This protocol leaks: tiles of one image, and images of one patient, land on
       both sides, so its scores overstate what a model does on a new patient. It exists only to
       reproduce the paper's numbers; use :func:`patient_split_indices` to evaluate a model.

    Parameters
    ----------
    n_images, n_tiles : int
        Number of images and of tiles per image.
    test_size : float, default=0.25
        Fraction of tiles in the test set.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    train, test : ndarray of int
        Indices into the flattened tiles ``(n_images * n_tiles,)``.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}.")
    rng = check_random_state(random_state)
    order = rng.permutation(n_images * n_tiles)
    n_test = max(1, round(test_size * len(order)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
