"""Self-learning cost: the relabeler's total time against one plain fit, and what it buys.

The proposer is the cheap one (colour/texture features + standardisation + logistic regression,
features computed once) on ``make_histology`` images, whose true tile labels are known. Rows:

- the relabeler's total time (all rounds, out-of-fold fits) against one plain fit of the same
  classifier on the inherited tile labels (informational: it is ~rounds x (folds + 1) fits);
- tile-label accuracy after relabeling against the inherited image labels.

For the full study (noise levels, cleanlab) see ``benchmarks/relabel_quality.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ._common import SkipBenchmark, make_row, scale


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the relabeler; see the module docstring."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from skhybrid.datasets import make_histology
        from skhybrid.features import ColorTextureFeatures
        from skhybrid.self_learning import SelfLearningRelabeler
        from skhybrid.tiling import SubImageTiler
    except ImportError as exc:
        raise SkipBenchmark(f"self-learning modules are not available ({exc})") from exc

    n_images = scale(240, 120, 24)
    data = make_histology(n_images, image_size=(96, 144), random_state=0)
    bags = SubImageTiler(grid=(3, 3)).fit_transform(data.images)
    start = time.perf_counter()
    features = ColorTextureFeatures().fit_transform(bags)
    feature_time = time.perf_counter() - start
    n, n_tiles = features.shape[:2]

    def inner() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))

    flat = features.reshape(n * n_tiles, -1)
    inherited = np.repeat(data.target, n_tiles)
    plain_times = []
    for _ in range(3):
        start = time.perf_counter()
        inner().fit(flat, inherited)
        plain_times.append(time.perf_counter() - start)
    plain = float(np.median(plain_times))

    start = time.perf_counter()
    relabeler = SelfLearningRelabeler(inner(), n_rounds=4, random_state=0).fit(
        features, data.target, groups=data.patient
    )
    relabel_time = time.perf_counter() - start
    rounds = len(relabeler.history_)

    truth = np.asarray(data.tile_target).reshape(n, n_tiles)
    before = float(np.mean(inherited.reshape(n, n_tiles) == truth))
    after = float(np.mean(np.asarray(relabeler.tile_labels_) == truth))
    return [
        make_row(
            "self-learning: relabeler total time vs one plain fit",
            relabel_time,
            plain,
            "s",
            ratio=relabel_time / plain,
            reference_name="one fit on inherited labels",
            note=f"{n} images x {n_tiles} tiles, {rounds} rounds, cv=5; colour/texture + "
            f"logistic proposer; features once: {feature_time:.2f} s",
        ),
        make_row(
            "self-learning: tile-label accuracy after relabeling",
            after,
            before,
            "accuracy",
            reference_name="inherited image labels",
            note="make_histology ground truth; a CNN proposer would cost ~the ratio above "
            "times one CNN fit",
        ),
    ]
