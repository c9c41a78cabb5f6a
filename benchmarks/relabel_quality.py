"""Quality of SelfLearningRelabeler's tile labels against make_histology's ground truth.

For each noise level (share of benign tiles in malignant images) and tissue difficulty, the
benchmark runs the relabeler (ColorTextureFeatures + StandardScaler + LogisticRegression,
patient-wise out-of-fold split) and prints, per round, the accuracy of the tile labels against
the ground truth and the precision / recall of the benign class being recovered in malignant
images. It compares with cleanlab's ``find_label_issues`` fed the same round-1 out-of-fold
probabilities (cleanlab is a benchmark-only extra: ``pip install cleanlab``; without it that
column is skipped with a message).

Usage::

    python benchmarks/relabel_quality.py --quick --out relabel_quality.json
    python benchmarks/relabel_quality.py --out relabel_quality.json   # more images and levels

Features are computed once per data set: ColorTextureFeatures is stateless, so this is the
same as putting it inside the inner pipeline, only faster.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skhybrid.datasets import make_histology
from skhybrid.features import ColorTextureFeatures
from skhybrid.reporting import format_self_learning_history
from skhybrid.self_learning import SelfLearningRelabeler
from skhybrid.tiling import SubImageTiler

QUICK_LEVELS = [(0.2, 0.4), (0.5, 0.4)]
FULL_LEVELS = [(0.2, 0.3), (0.5, 0.3), (0.2, 0.5), (0.5, 0.5), (0.35, 0.6)]


def tile_metrics(
    labels: np.ndarray, truth: np.ndarray, target: np.ndarray
) -> dict[str, float | None]:
    """Accuracy of tile labels, and precision / recall of the benign tiles of malignant images.

    Tiles of benign images are right by construction, so the recovery is measured where labels
    can be wrong: inside malignant images. Precision is None while no tile is called benign.
    """
    malignant = target == 1
    said_benign = labels[malignant] == 0
    is_benign = truth[malignant] == 0
    true_positive = float((said_benign & is_benign).sum())
    return {
        "accuracy": float(np.mean(labels == truth)),
        "accuracy_malignant_images": float(np.mean(labels[malignant] == truth[malignant])),
        "benign_precision": true_positive / said_benign.sum() if said_benign.any() else None,
        "benign_recall": true_positive / max(is_benign.sum(), 1),
    }


def inner_estimator() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def cleanlab_labels(
    oof_proba: np.ndarray, target: np.ndarray, n_tiles: int
) -> dict[str, np.ndarray] | None:
    """Tile labels after cleanlab's find_label_issues on the inherited labels, or None."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    inherited = np.repeat(target, n_tiles)
    issues = find_label_issues(labels=inherited, pred_probs=oof_proba.reshape(-1, 2))
    issues = issues.reshape(-1, n_tiles)
    raw = np.where(issues, 1 - target[:, None], target[:, None])
    # With the hierarchy: only tiles of malignant images may turn benign.
    with_prior = np.where(issues & (target[:, None] == 1), 0, target[:, None])
    return {"cleanlab_raw": raw, "cleanlab_with_prior": with_prior}


def run_level(
    benign_tile_fraction: float, difficulty: float, n_images: int, n_rounds: int, seed: int
) -> dict[str, Any]:
    start = time.perf_counter()
    data = make_histology(
        n_images,
        image_size=(96, 144),
        benign_tile_fraction=benign_tile_fraction,
        difficulty=difficulty,
        random_state=seed,
    )
    bags = SubImageTiler(grid=(3, 3)).fit_transform(data.images)
    features = ColorTextureFeatures().fit_transform(bags)
    n_tiles = bags.shape[1]
    result: dict[str, Any] = {
        "benign_tile_fraction": benign_tile_fraction,
        "difficulty": difficulty,
        "n_images": n_images,
        "n_tiles": int(data.tile_target.size),
        "true_benign_share_in_malignant": float(1 - data.tile_target[data.target == 1].mean()),
    }
    for name, allow_flip_back in (("relabeler", True), ("relabeler_monotone", False)):
        relabeler = SelfLearningRelabeler(
            inner_estimator(), n_rounds=n_rounds, allow_flip_back=allow_flip_back, random_state=seed
        ).fit(features, data.target, groups=data.patient)
        result[name] = {
            "rounds": [
                {**tile_metrics(labels, data.tile_target, data.target), **entry}
                for labels, entry in zip(relabeler.tile_label_history_, relabeler.history_)
            ],
            "termination_condition": relabeler.termination_condition_,
        }
        if name == "relabeler":
            result["table"] = format_self_learning_history(relabeler, tile_truth=data.tile_target)

    # The same round-1 out-of-fold probabilities (same folds, same inherited labels).
    first_round = SelfLearningRelabeler(inner_estimator(), n_rounds=1, random_state=seed)
    first_round.fit(features, data.target, groups=data.patient)
    cleaned = cleanlab_labels(first_round.oof_proba_, data.target, n_tiles)
    if cleaned is not None:
        for name, labels in cleaned.items():
            result[name] = tile_metrics(labels, data.tile_target, data.target)
    result["seconds"] = time.perf_counter() - start
    return result


def print_level(result: dict[str, Any]) -> None:
    print(
        f"\n## benign_tile_fraction={result['benign_tile_fraction']}, "
        f"difficulty={result['difficulty']} ({result['n_images']} images, "
        f"{result['n_tiles']} tiles, {result['seconds']:.1f} s)\n"
    )
    print(result["table"], "\n")
    header = "| Method | Round | Tile acc. | Acc. in malignant images | Benign precision | Benign recall |"
    print(header)
    print("|---|---|---|---|---|---|")

    def row(method: str, round_name: str, m: dict[str, Any]) -> None:
        precision = "-" if m["benign_precision"] is None else f"{m['benign_precision']:.3f}"
        print(
            f"| {method} | {round_name} | {m['accuracy']:.3f} | "
            f"{m['accuracy_malignant_images']:.3f} | {precision} | {m['benign_recall']:.3f} |"
        )

    for method in ("relabeler", "relabeler_monotone"):
        for entry in result[method]["rounds"]:
            round_name = "0 (inherited)" if entry["round"] == 0 else str(entry["round"])
            row(method, round_name, entry)
    for method in ("cleanlab_raw", "cleanlab_with_prior"):
        if method in result:
            row(method, "on round-1 OOF", result[method])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two noise levels, 150 images")
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    levels = QUICK_LEVELS if args.quick else FULL_LEVELS
    n_images = args.n_images or (150 if args.quick else 300)
    try:
        import cleanlab

        cleanlab_version = cleanlab.__version__
    except ImportError:
        cleanlab_version = None
        print(
            "cleanlab is not installed: skipping the cleanlab comparison "
            "(install it with `pip install cleanlab`)."
        )
    # The linear models here are tiny: several BLAS threads only add contention.
    with threadpool_limits(limits=1):
        levels_results = [
            run_level(fraction, difficulty, n_images, args.rounds, args.seed)
            for fraction, difficulty in levels
        ]
    results = {
        "n_images": n_images,
        "rounds": args.rounds,
        "seed": args.seed,
        "cleanlab": cleanlab_version,
        "levels": levels_results,
    }
    for result in results["levels"]:
        print_level(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"\nResults written to {args.out}")
    return results


if __name__ == "__main__":
    main()
