"""Stain shift: train on lab A, test on lab B, with stain normalisation and stain augmentation.

``make_histology`` renders the same tissue, labels and patients stained by two labs
(``stain_shift=0``: lab A, ``1``: lab B; ``docs/datasets.md``). Patients are split once
(stratified by class, grouped by patient): every model trains on lab A's images of the training
patients and is tested on the held-out patients, stained by lab B (the shift) and by lab A (no
shift, the control). All remedies in one run, same data, same seeds:

- ``none``: the model as is;
- ``macenko`` / ``reinhard``: a :class:`~skhybrid.stain_normalization.StainNormalizer` fitted on
  the lab-A training images, before the tiler, at training and test time;
- ``stain aug``: ``augment="stain"`` (HED jitter of the training tiles, ``stain_jitter=0.05``,
  the default) and ``stain aug 0.2`` (Tellez et al.'s strong ranges);
- ``macenko + stain aug``: both.

Model: ``CNNClassifier("resnet18", weights=None)`` (from scratch, offline) on 32x32 tiles of
96x96 images, mean of the tile probabilities per image. A second model, the colour/texture
baseline (:class:`~skhybrid.features.ColorTextureFeatures`, mean over tiles, standardised,
logistic regression), has no training-time augmentation, so only its normalisation rows.

Rows: each remedy's image accuracy on lab B against the same model's no-shift accuracy on lab
A with no remedy (goal: at least 90 % of it), and the ROC AUC likewise (informational).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ._common import SkipBenchmark, make_row, scale

#: Share of the no-shift accuracy a remedy must recover on lab B.
GOAL = 0.9
#: ``(name, normaliser method or None, augment, stain_jitter)`` of the CNN's configurations.
CNN_CONFIGS = [
    ("none", None, False, 0.05),
    ("macenko", "macenko", False, 0.05),
    ("reinhard", "reinhard", False, 0.05),
    ("stain aug", None, "stain", 0.05),
    ("stain aug 0.2", None, "stain", 0.2),
    ("macenko + stain aug", "macenko", "stain", 0.05),
    ("macenko + stain aug 0.2", "macenko", "stain", 0.2),
]
#: The colour/texture baseline's configurations (no augmentation in its training).
BASELINE_CONFIGS = [("none", None), ("macenko", "macenko"), ("reinhard", "reinhard")]


def make_data(n_images: int, random_state: int = 0) -> dict[str, Any]:
    """Lab A training images, and the held-out patients' images from lab A and lab B."""
    from sklearn.model_selection import StratifiedGroupKFold

    from skhybrid.datasets import make_histology

    common = dict(image_size=(96, 96), grid=(3, 3), n_jobs=1, random_state=random_state)
    lab_a = make_histology(n_images, **common)
    lab_b = make_histology(n_images, stain_shift=1.0, **common)
    # The same seed: the very same tissue, labels and patients, only the staining differs.
    assert np.array_equal(lab_a.target, lab_b.target)
    folds = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=random_state)
    train, test = next(folds.split(lab_a.images, lab_a.target, groups=lab_a.patient))
    return {
        "train": (lab_a.images[train], lab_a.target[train], lab_a.patient[train]),
        "test_a": (lab_a.images[test], lab_a.target[test]),
        "test_b": (lab_b.images[test], lab_b.target[test]),
        "test_patient": lab_a.patient[test],
        "n_patients": (len(np.unique(lab_a.patient[train])), len(np.unique(lab_a.patient[test]))),
    }


def _scores(model: Any, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Image accuracy and ROC AUC (of the positive class, ``skhybrid.class_roles``)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    from skhybrid.class_roles import positive_label

    proba = model.predict_proba(X)
    classes = list(model.classes_)
    positive = positive_label(classes)
    accuracy = accuracy_score(y, np.asarray(classes)[proba.argmax(axis=1)])
    y_true = np.asarray(y) == positive
    if not 0 < y_true.sum() < len(y_true):  # one class only (tiny smoke data): undefined
        return float(accuracy), float("nan")
    auc = roc_auc_score(y_true, proba[:, classes.index(positive)])
    return float(accuracy), float(auc)


def _normaliser(method: str | None) -> list[tuple[str, Any]]:
    from skhybrid.stain_normalization import StainNormalizer

    # reference=None: the target stain is learnt from the images given to fit (lab A training).
    return [] if method is None else [("stain", StainNormalizer(method, random_state=0))]


def cnn_pipeline(method: str | None, augment: Any, stain_jitter: float, epochs: int) -> Any:
    """Normaliser (optional), tiler, resnet18 from scratch on the tiles."""
    from sklearn.pipeline import Pipeline

    from skhybrid.estimators import CNNClassifier
    from skhybrid.tiling import SubImageTiler

    cnn = CNNClassifier(
        "resnet18",
        weights=None,
        freeze_epochs=0,
        max_epochs=epochs,
        lr=1e-3,
        lr_decay=1.0,
        batch_size=64,
        valid_size=None,
        augment=augment,
        stain_jitter=stain_jitter,
        random_state=0,
        verbose=0,
    )
    return Pipeline([*_normaliser(method), ("tiles", SubImageTiler(grid=(3, 3))), ("cnn", cnn)])


def baseline_pipeline(method: str | None) -> Any:
    """Normaliser (optional), tiler, colour/texture features averaged over tiles, logistic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from skhybrid.features import ColorTextureFeatures
    from skhybrid.tiling import SubImageTiler

    return Pipeline(
        [
            *_normaliser(method),
            ("tiles", SubImageTiler(grid=(3, 3))),
            ("features", ColorTextureFeatures()),
            ("mean", FunctionTransformer(_mean_over_tiles)),
            ("scale", StandardScaler()),
            ("logistic", LogisticRegression(max_iter=2000)),
        ]
    )


def _mean_over_tiles(features: np.ndarray) -> np.ndarray:
    return np.asarray(features).mean(axis=1)


def measure(
    n_images: int, epochs: int, cnn_configs: Any = None, baseline_configs: Any = None
) -> list[dict[str, Any]]:
    """Every configuration's accuracy and AUC on lab B and on lab A (see the module docstring)."""
    data = make_data(n_images)
    X, y, groups = data["train"]
    results = []
    for name, method, augment, jitter in CNN_CONFIGS if cnn_configs is None else cnn_configs:
        model = cnn_pipeline(method, augment, jitter, epochs)
        with _one_thread():
            model.fit(X, y, cnn__groups=groups)
            results.append(("resnet18", name, *_scores(model, *data["test_b"]),
                            *_scores(model, *data["test_a"])))  # fmt: skip
    for name, method in BASELINE_CONFIGS if baseline_configs is None else baseline_configs:
        model = baseline_pipeline(method).fit(X, y)
        results.append(("colour/texture", name, *_scores(model, *data["test_b"]),
                        *_scores(model, *data["test_a"])))  # fmt: skip
    setup = (
        f"train {len(X)} lab-A images ({data['n_patients'][0]} patients), test "
        f"{len(data['test_b'][1])} images of {data['n_patients'][1]} other patients; "
        f"{epochs} epochs for the CNN"
    )
    return rows_from(results, setup)


def rows_from(results: list[tuple], setup: str) -> list[dict[str, Any]]:
    """Rows from ``(model, config, acc_b, auc_b, acc_a, auc_a)``: goal on the lab-B accuracy."""
    rows = []
    for model in dict.fromkeys(result[0] for result in results):
        mine = [result for result in results if result[0] == model]
        reference = next((r for r in mine if r[1] == "none"), mine[0])
        _, _, _, _, no_shift_acc, no_shift_auc = reference
        for _, config, acc_b, auc_b, acc_a, auc_a in mine:
            remedy = config != "none"
            rows.append(
                make_row(
                    f"stain shift: {model}, {config}: image accuracy on lab B",
                    acc_b,
                    no_shift_acc,
                    "accuracy",
                    goal=GOAL if remedy else None,
                    reference_name="no shift (lab A test patients, no remedy)",
                    note=f"{config} on lab A (no shift): accuracy {acc_a:.3f}; {setup}",
                )
            )
            rows.append(
                make_row(
                    f"stain shift: {model}, {config}: ROC AUC on lab B",
                    auc_b,
                    no_shift_auc,
                    "ROC AUC",
                    reference_name="no shift (lab A test patients, no remedy)",
                    note=f"{config} on lab A (no shift): ROC AUC {auc_a:.3f}",
                )
            )
    return rows


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Train on one thread (a shared machine), restoring torch's setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run(quick: bool) -> list[dict[str, Any]]:
    """Train on lab A, test on lab B; see the module docstring."""
    try:
        import skhybrid.stain_normalization  # noqa: F401
        from skhybrid.estimators import CNNClassifier  # noqa: F401
    except ImportError as exc:
        raise SkipBenchmark(f"stain modules are not available ({exc})") from exc
    smoke_configs = [CNN_CONFIGS[0], CNN_CONFIGS[1], CNN_CONFIGS[3]]
    return measure(
        n_images=scale(240, 120, 30),
        epochs=scale(10, 6, 1),
        cnn_configs=scale(None, None, smoke_configs),
        baseline_configs=scale(None, None, BASELINE_CONFIGS[:2]),
    )
