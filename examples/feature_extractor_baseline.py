"""Frozen CNN features + logistic regression / SVM: the classic transfer-learning baselines.

:class:`~skhybrid.estimators.CNNFeatureExtractor` turns each image into the globally pooled
features of a frozen CNN, so any scikit-learn classifier can sit on top. With
``--weights imagenet`` (the weights file must be in torch's cache, or downloadable) these are
the paper's CNN+classifier baselines; without it the CNN is random (``weights=None``), which
still gives a usable (and humbling) reference point.

Run: ``python examples/feature_extractor_baseline.py [--weights imagenet] [--backbone resnet101]``
"""

from __future__ import annotations

import argparse

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skhybrid.datasets import make_histology
from skhybrid.estimators import CNNFeatureExtractor
from skhybrid.nn import MissingWeightsError
from skhybrid.tiling import SubImageTiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--weights", default=None, choices=[None, "imagenet"])
    parser.add_argument("--n-images", type=int, default=120)
    args = parser.parse_args()

    data = make_histology(
        n_images=args.n_images, image_size=(192, 192), n_patients=12, random_state=0
    )
    # Tiles of 64x64, their features averaged per image is a different model; here the CNN
    # sees the whole (downsized) image, as the classic baselines do.
    images = SubImageTiler(grid=(1, 1), tile_size=(96, 96)).fit_transform(data.images)[:, 0]
    extractor = CNNFeatureExtractor(args.backbone, weights=args.weights)
    try:
        features = extractor.fit_transform(images)
    except MissingWeightsError as error:
        raise SystemExit(str(error)) from None
    print(f"{args.backbone} features ({args.weights or 'random'} weights): {features.shape}")

    classifiers = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)),
        "svm (rbf)": make_pipeline(StandardScaler(), SVC(C=1.0)),
    }
    # The CNN is frozen, so features can be computed once; the classifiers are what is
    # cross-validated, patient-wise.
    for name, classifier in classifiers.items():
        scores = cross_val_score(
            classifier, features, data.target, groups=data.patient, cv=GroupKFold(4)
        )
        print(f"  {name:10s} patient-wise accuracy: {scores.mean():.3f} ± {scores.std():.3f}")


if __name__ == "__main__":
    main()
