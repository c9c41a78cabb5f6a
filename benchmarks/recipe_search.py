"""Which recipe wins on real tissue? A measured search over BreakHis 200X patches.

Run::

    python -m benchmarks.recipe_search --dev-npz /work/shared/data/breakhis-200x-patches/dev.npz

(``--quick``: one repeat of the folds and 200 bootstrap resamples, a few minutes; the default
is 3 repeats x 4 patient-wise folds and 1000 resamples, the table of ``docs/results.md``.)
Without the file the script prints why and exits 0.

``dev.npz`` holds ``images`` (n, 224, 224, 3) uint8, ``target`` (benign/malignant) and
``patient_number``. Every candidate is evaluated by
:func:`skhybrid.evaluation.cross_validate_patients` on the same
``RepeatedStratifiedGroupKFold(4, n_repeats, random_state=0)`` folds, with the colour/texture
baseline (``ColorTextureFeatures`` + scaler + balanced logistic regression) on the same folds,
so every row carries the paired patient-bootstrap interval of its difference to the baseline.

Frozen features are computed once per image and cached (``--cache``): a frozen CNN, the
colour/texture statistics and a flip/rotation of an image learn nothing from the data, so the
features of an image are the same whichever fold it falls in, and computing them per fold would
only repeat the same arithmetic. Everything that learns (scaler, logistic regression,
threshold, calibration, ensemble weights) is fitted inside each fold on the training patients
only. The one exception is stain normalisation, whose target stain is the pooled pixels of all
the images (unsupervised, no labels); it is reported as such.

Costs are minutes on this machine: ``features`` is one pass over all images (a real
cross-validation recomputes it once per fold), ``fits`` the cross-validated fitting and
predicting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

DEFAULT_NPZ = "/work/shared/data/breakhis-200x-patches/dev.npz"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "skhybrid/recipe_search"
)

# --------------------------------------------------------------------------- feature sets


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    from skhybrid import SubImageTiler

    if images.shape[1:3] == (size, size):
        return images
    return SubImageTiler(grid=(1, 1), tile_size=(size, size)).fit_transform(images)[:, 0]


def _cnn(images: np.ndarray, *, weights: Any = "imagenet") -> np.ndarray:
    from skhybrid import CNNFeatureExtractor

    extractor = CNNFeatureExtractor("efficientnet_lite0", weights=weights, device="cpu")
    return extractor.fit(images[:2]).transform(images)


def _texture(images: np.ndarray) -> np.ndarray:
    from skhybrid import ColorTextureFeatures

    return ColorTextureFeatures().fit_transform(images)


def _texture_tiles(images: np.ndarray) -> np.ndarray:
    """Colour/texture of the 4 tiles of a 2x2 grid: mean and spread over the tiles."""
    from skhybrid import ColorTextureFeatures, SubImageTiler

    per_tile = ColorTextureFeatures().fit_transform(
        SubImageTiler(grid=(2, 2)).fit_transform(images)
    )
    return np.hstack([per_tile.mean(axis=1), per_tile.std(axis=1)])


def _tiles_2x2(images: np.ndarray) -> np.ndarray:
    from skhybrid import SubImageTiler

    bags = SubImageTiler(grid=(2, 2)).fit_transform(images)  # 4 tiles of 112 px at 224
    return _cnn(bags.reshape(-1, *bags.shape[2:])).reshape(len(images), 4, -1).mean(axis=1)


def _stain_normalised(images: np.ndarray) -> np.ndarray:
    from skhybrid import StainNormalizer

    return _cnn(StainNormalizer(random_state=0).fit_transform(images))


#: test-time views: identity, horizontal flip, vertical flip, rotation by 90 degrees
VIEWS = {
    "v0": lambda im: im,
    "hflip": lambda im: im[:, :, ::-1],
    "vflip": lambda im: im[:, ::-1],
    "rot90": lambda im: np.rot90(im, 1, axes=(1, 2)),
}


def _view_features(view: str) -> Callable[[np.ndarray], np.ndarray]:
    return lambda images: _cnn(np.ascontiguousarray(VIEWS[view](images)))


FEATURE_SETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "texture": _texture,
    "texture_tiles2x2": _texture_tiles,
    "texture112": lambda im: _texture(_resize(im, 112)),
    "texture56": lambda im: _texture(_resize(im, 56)),
    "eff224": lambda im: _cnn(im),
    "eff112": lambda im: _cnn(_resize(im, 112)),
    "eff224_random": lambda im: _cnn(im, weights=None),
    "eff_tiles2x2": _tiles_2x2,
    "eff224_stain": _stain_normalised,
    **{f"eff224_{view}": _view_features(view) for view in VIEWS if view != "v0"},
}


def _key(images: np.ndarray) -> str:
    digest = hashlib.sha1(images[:: max(1, len(images) // 16)].tobytes()).hexdigest()[:12]
    return f"{len(images)}-{images.shape[1]}-{digest}"


def compute_features(
    images: np.ndarray, names: list[str], cache: Path | None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each named feature set of ``images`` (from the cache when there) and its minutes."""
    features, minutes = {}, {}
    for name in names:
        path = None if cache is None else cache / f"{name}-{_key(images)}.npz"
        if path is not None and path.exists():
            with np.load(path) as stored:
                features[name], minutes[name] = stored["x"], float(stored["minutes"])
            continue
        start = time.perf_counter()
        features[name] = np.asarray(FEATURE_SETS[name](images), dtype=np.float32)
        minutes[name] = (time.perf_counter() - start) / 60
        print(f"  features {name}: {features[name].shape} in {minutes[name]:.1f} min", flush=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, x=features[name], minutes=minutes[name])
    return features, minutes


# --------------------------------------------------------------------------- estimators


def _both(*columns: slice) -> list[int]:
    """The column indices of several feature sets."""
    return [i for c in columns for i in range(c.start, c.stop)]


def _select(columns: slice | list[int]) -> Any:
    from sklearn.compose import ColumnTransformer

    return ColumnTransformer([("keep", "passthrough", columns)])


def _lr(columns: slice, class_weight: Any = "balanced", C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        _select(columns),
        StandardScaler(),
        LogisticRegression(class_weight=class_weight, C=C, max_iter=3000),
    )


def _ensemble(*members: Any, weights: Any = None) -> Any:
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier(
        [(f"m{i}", m) for i, m in enumerate(members)], voting="soft", weights=weights
    )


def _hgb(columns: slice) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        _select(columns),
        HistGradientBoostingClassifier(
            class_weight="balanced", max_iter=200, learning_rate=0.05, random_state=0
        ),
    )


def _svc(columns: slice) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    # scikit-learn 1.9 deprecates SVC(probability=True) for this
    return make_pipeline(
        _select(columns),
        StandardScaler(),
        CalibratedClassifierCV(SVC(class_weight="balanced"), ensemble=False),
    )


def _threshold(estimator: Any, calibration: str | None = None) -> Any:
    from skhybrid.recipes import PatientThresholdClassifier

    return PatientThresholdClassifier(estimator, calibration=calibration)


class ViewAveraging(ClassifierMixin, BaseEstimator):
    """Test-time augmentation on precomputed views: average the probabilities over views.

    ``estimator`` is fitted on the first view's columns (the identity) and predicts every
    view (``views``: one column slice per view, of equal width); the probabilities are
    averaged.
    """

    def __init__(self, estimator: Any = None, views: tuple = ()) -> None:
        self.estimator = estimator
        self.views = views

    def _view(self, X: np.ndarray, view: slice) -> np.ndarray:
        return np.asarray(X)[:, view]

    def fit(self, X: np.ndarray, y: np.ndarray) -> ViewAveraging:
        self.estimator_ = clone(self.estimator).fit(self._view(X, self.views[0]), y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.mean([self.estimator_.predict_proba(self._view(X, v)) for v in self.views], 0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _tta(columns_per_view: list[slice], width: int) -> Any:
    """Balanced LR on one view's columns (0..width), evaluated on every view."""
    return ViewAveraging(_lr(slice(0, width)), tuple(columns_per_view))


# --------------------------------------------------------------------------- candidates


def candidates(cols: dict[str, slice]) -> list[dict[str, Any]]:
    """The candidates in the order they are run: name, settings, feature sets, estimator."""
    cols = {**{name: slice(0, 0) for name in FEATURE_SETS}, **cols}  # sets not computed
    width = cols["eff224"].stop - cols["eff224"].start
    views = [cols["eff224"]] + [cols[f"eff224_{v}"] for v in VIEWS if v != "v0"]

    def row(name: str, settings: str, uses: list[str], make: Callable[[], Any]) -> dict:
        return {"name": name, "settings": settings, "uses": uses, "make": make}

    eff, tex = cols["eff224"], cols["texture"]
    return [
        row("texture LR + threshold", "colour/texture, balanced LR, inner-tuned threshold",
            ["texture"], lambda: _threshold(_lr(tex))),
        row("frozen effnet224 LR", "efficientnet_lite0 ImageNet, frozen, 224 px, balanced LR",
            ["eff224"], lambda: _lr(eff)),
        row("frozen effnet224 LR unweighted", "as above, class_weight=None",
            ["eff224"], lambda: _lr(eff, class_weight=None)),
        row("frozen effnet224 LR C=0.1", "as above, balanced, C=0.1",
            ["eff224"], lambda: _lr(eff, C=0.1)),
        row("frozen effnet224 LR + threshold", "balanced LR, inner-tuned threshold",
            ["eff224"], lambda: _threshold(_lr(eff))),
        row("frozen effnet112 LR", "images resized to 112 px", ["eff112"],
            lambda: _lr(cols["eff112"])),
        row("frozen effnet 2x2 tiles LR", "4 tiles of 112 px, features averaged",
            ["eff_tiles2x2"], lambda: _lr(cols["eff_tiles2x2"])),
        row("frozen effnet224 stain-normalised LR", "Macenko to the pooled stain, then as above",
            ["eff224_stain"], lambda: _lr(cols["eff224_stain"])),
        row("random-weight effnet224 LR", "weights=None (no pretraining), frozen features",
            ["eff224_random"], lambda: _lr(cols["eff224_random"])),
        row("frozen effnet224 LR, TTA", "probabilities averaged over id/hflip/vflip/rot90",
            ["eff224"] + [f"eff224_{v}" for v in VIEWS if v != "v0"],
            lambda: _tta(views, width)),
        row("ensemble effnet224 + texture", "soft vote of the two balanced LRs",
            ["eff224", "texture"], lambda: _ensemble(_lr(eff), _lr(tex))),
        row("ensemble + threshold", "soft vote, inner-tuned threshold",
            ["eff224", "texture"], lambda: _threshold(_ensemble(_lr(eff), _lr(tex)))),
        row("ensemble + sigmoid calibration + threshold", "as above, Platt-calibrated",
            ["eff224", "texture"],
            lambda: _threshold(_ensemble(_lr(eff), _lr(tex)), calibration="sigmoid")),
        row("ensemble 2x2 tiles + texture + threshold", "tile features instead of 224 px",
            ["eff_tiles2x2", "texture"],
            lambda: _threshold(_ensemble(_lr(cols["eff_tiles2x2"]), _lr(tex)))),
        row("ensemble, texture weighted 2:1, + threshold", "soft vote weights (1, 2)",
            ["eff224", "texture"],
            lambda: _threshold(_ensemble(_lr(eff), _lr(tex), weights=[1, 2]))),
        row("frozen effnet224 LR C=0.01", "balanced, C=0.01", ["eff224"],
            lambda: _lr(eff, C=0.01)),
        row("texture gradient boosting", "HistGradientBoosting, balanced", ["texture"],
            lambda: _hgb(tex)),
        row("texture RBF SVM", "balanced SVC, Platt probabilities (CalibratedClassifierCV)", ["texture"],
            lambda: _svc(tex)),
        row("texture 2x2 tiles LR", "whole-image + tile mean/std colour/texture, balanced LR",
            ["texture", "texture_tiles2x2"],
            lambda: _lr(_both(tex, cols["texture_tiles2x2"]))),
        row("texture 2x2 tiles LR + threshold", "as above, inner-tuned threshold",
            ["texture", "texture_tiles2x2"],
            lambda: _threshold(_lr(_both(tex, cols["texture_tiles2x2"])))),
        row("ensemble texture LR + texture SVM + threshold", "soft vote, inner-tuned threshold",
            ["texture"], lambda: _threshold(_ensemble(_lr(tex), _svc(tex)))),
        row("texture gradient boosting + threshold", "inner-tuned threshold", ["texture"],
            lambda: _threshold(_hgb(tex))),
        row("texture RBF SVM + threshold", "inner-tuned threshold", ["texture"],
            lambda: _threshold(_svc(tex))),
        row("ensemble texture LR + SVM + boosting + threshold",
            "soft vote of three texture models, inner-tuned threshold", ["texture"],
            lambda: _threshold(_ensemble(_lr(tex), _svc(tex), _hgb(tex)))),
        row("multi-scale texture 224+112 LR + SVM + threshold",
            "colour/texture of the patch and of it at half size, the default's vote",
            ["texture", "texture112"],
            lambda: _threshold(_ensemble(_lr(_both(tex, cols["texture112"])),
                                         _svc(_both(tex, cols["texture112"]))))),
        row("multi-scale texture 224+112+56 LR + SVM + threshold", "as above, and at quarter size",
            ["texture", "texture112", "texture56"],
            lambda: _threshold(_ensemble(
                _lr(_both(tex, cols["texture112"], cols["texture56"])),
                _svc(_both(tex, cols["texture112"], cols["texture56"]))))),
    ]  # fmt: skip


class CachedFit(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted once per training set, the fitted model kept in ``cache``.

    The fine-tuned candidates share their networks: the network of a fold is the same whether
    it is scored alone or in a vote, so it is trained once (keyed by the training images,
    labels and the estimator's parameters) and loaded by the other candidates. ``cache=None``
    fits every time.
    """

    def __init__(self, estimator: Any = None, cache: Any = None) -> None:
        self.estimator = estimator
        self.cache = cache

    def fit(self, X: np.ndarray, y: np.ndarray) -> CachedFit:
        import joblib

        path = None
        if self.cache is not None:
            digest = hashlib.sha1(np.ascontiguousarray(X).tobytes())
            # Labels by their rank: a VotingClassifier passes them encoded as 0..k-1, and the
            # network of a fold is the same either way (its columns are in sorted order).
            digest.update(
                np.unique(np.asarray(y), return_inverse=True)[1].astype(np.int64).tobytes()
            )
            digest.update(repr(self.estimator).encode())
            path = Path(self.cache) / f"fit-{digest.hexdigest()[:20]}.joblib"
        if path is not None and path.exists():
            self.estimator_ = joblib.load(path)
        else:
            self.estimator_ = clone(self.estimator).fit(X, y)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                joblib.dump(self.estimator_, path)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _net(weights: Any, size: int = 112, cache: Any = None) -> Any:
    from sklearn.pipeline import make_pipeline

    from skhybrid import CNNClassifier, SubImageTiler

    net = make_pipeline(
        SubImageTiler(grid=(1, 1), tile_size=(size, size)),
        CNNClassifier(
            backbone="efficientnet_lite0", weights=weights, freeze_epochs="auto",
            class_weight="balanced", max_epochs=12, batch_size=32, device="cpu",
            random_state=0, verbose=0,
        ),
    )  # fmt: skip
    return CachedFit(net, cache)


def _hybrid(grid: int = 1, rnn_map: str = "hematoxylin", cache: Any = None) -> Any:
    """The paper's hybrid CNN-LSTM on ImageNet ``efficientnet_lite0``, 112 px tiles."""
    from sklearn.pipeline import make_pipeline

    from skhybrid import HybridCNNLSTMClassifier, SubImageTiler

    net = make_pipeline(
        SubImageTiler(grid=(grid, grid), tile_size=(112, 112)),
        HybridCNNLSTMClassifier(
            backbone="efficientnet_lite0", weights="imagenet", rnn_map=rnn_map,
            freeze_epochs="auto", class_weight="balanced", max_epochs=12, batch_size=32,
            device="cpu", random_state=0, verbose=0,
        ),
    )  # fmt: skip
    return CachedFit(net, cache)


def _image_texture_vote(cache: Any = None) -> Any:
    """The default recipe's texture vote (LR + SVM) on images, without its threshold."""
    from sklearn.pipeline import Pipeline

    from skhybrid.recipes import recommended_pipeline

    model = recommended_pipeline(threshold=False)
    # Colour/texture statistics of a training set computed once, whichever candidate asks.
    memory = None if cache is None else str(Path(cache) / "pipeline-memory")
    return Pipeline(model.steps, memory=memory)


def finetune_candidates(cache: Any = None) -> list[dict[str, Any]]:
    """Networks trained on the images (``--finetune``): the costly candidates.

    Their fitted networks are kept in ``cache`` (:class:`CachedFit`), so the votes reuse the
    networks of the candidate scored alone.
    """
    fits = None if cache is None else Path(cache) / "fits"

    def vote(size: int = 112) -> Any:
        return _ensemble(_image_texture_vote(cache), _net("imagenet", size, fits))

    return [
        {
            "name": "fine-tuned effnet112 CNNClassifier",
            "settings": "ImageNet weights, freeze_epochs='auto' (10 of 12 frozen), balanced, 112 px",
            "make": lambda: _net("imagenet", 112, fits),
        },
        {
            "name": "fine-tuned effnet112 + texture LR+SVM vote",
            "settings": "soft vote of the default recipe's texture vote and the fine-tuned CNN, "
            "threshold 0.5",
            "make": vote,
        },
        {
            "name": "fine-tuned effnet112 + texture LR+SVM vote + threshold",
            "settings": "as above, inner-tuned threshold (the CNN trained on the inner folds too)",
            "make": lambda: _threshold(vote()),
        },
        {
            "name": "fine-tuned effnet224 CNNClassifier",
            "settings": "as the 112 px one, at 224 px",
            "make": lambda: _net("imagenet", 224, fits),
        },
        {
            "name": "fine-tuned effnet224 + texture LR+SVM vote",
            "settings": "soft vote of the texture vote and the 224 px fine-tuned CNN, threshold 0.5",
            "make": lambda: vote(224),
        },
        {
            "name": "hybrid effnet112 CNN-LSTM, hematoxylin map",
            "settings": "HybridCNNLSTMClassifier, ImageNet lite0, attention fusion, LSTM on the "
            "hematoxylin map, freeze_epochs='auto', balanced, 12 epochs, 112 px",
            "make": lambda: _hybrid(1, "hematoxylin", fits),
        },
        {
            "name": "hybrid effnet112 CNN-LSTM, luminance map",
            "settings": "as above, the LSTM reading luminance",
            "make": lambda: _hybrid(1, "luminance", fits),
        },
        {
            "name": "hybrid effnet 2x2 tiles CNN-LSTM, hematoxylin map",
            "settings": "4 tiles of 112 px (the patch's own pixels), tile probabilities averaged",
            "make": lambda: _hybrid(2, "hematoxylin", fits),
        },
        {
            "name": "hybrid effnet112 + texture LR+SVM vote",
            "settings": "soft vote of the texture vote and the hematoxylin hybrid, threshold 0.5",
            "make": lambda: _ensemble(_image_texture_vote(cache), _hybrid(1, "hematoxylin", fits)),
        },
        {
            "name": "effnet112 CNNClassifier from scratch",
            "settings": "weights=None, 12 epochs, balanced, 112 px",
            "make": lambda: _net(None, 112, fits),
        },
    ]


def _fmt(interval: Any) -> str:
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from skhybrid import RepeatedStratifiedGroupKFold, cross_validate_patients

    data = np.load(args.dev_npz, allow_pickle=False)
    images, y, groups = data["images"], data["target"], data["patient_number"]
    n_repeats = 1 if args.quick else args.repeats
    n_resamples = 200 if args.quick else 1000
    print(
        f"{len(y)} images, {len(np.unique(groups))} patients, classes "
        f"{dict(zip(*np.unique(y, return_counts=True)))}; {n_repeats} x 4 patient-wise folds",
        flush=True,
    )
    cache = None if args.no_cache else args.cache
    probe = candidates({name: slice(0, 1280) for name in FEATURE_SETS})
    chosen = [c for c in probe if not args.only or any(o in c["name"] for o in args.only)]
    names = sorted({"texture"} | {u for c in chosen for u in c["uses"]})
    features, minutes = compute_features(images, names, cache)
    X = np.hstack([features[n] for n in names])
    cols, start = {}, 0
    for n in names:
        cols[n] = slice(start, start + features[n].shape[1])
        start = cols[n].stop
    keep = {c["name"] for c in chosen}
    # (candidate, its X, the baseline on that X): the same baseline model either way
    runs = [(c, X, lambda: _lr(cols["texture"])) for c in candidates(cols) if c["name"] in keep]
    if args.recipe:
        from skhybrid.recipes import recommended_pipeline

        recipe = {
            "name": "recommended_pipeline() on images",
            "settings": "the factory's default, features recomputed in every fold",
            "uses": [],
            "make": recommended_pipeline,
        }
        runs.append((recipe, images, _image_baseline))
    if args.finetune:
        for cand in finetune_candidates(cache):
            if not args.only or any(o in cand["name"] for o in args.only):
                runs.append(({**cand, "uses": []}, images, _image_baseline))
    cv = RepeatedStratifiedGroupKFold(n_splits=4, n_repeats=n_repeats, random_state=0)
    rows = []
    for cand, data_x, make_baseline in runs:
        start = time.perf_counter()
        result = cross_validate_patients(
            cand["make"](), data_x, y, groups, cv=cv, baseline=make_baseline(),
            n_resamples=n_resamples, random_state=0, verbose=0,
        )  # fmt: skip
        fits = (time.perf_counter() - start) / 60
        row = {
            "name": cand["name"],
            "settings": cand["settings"],
            "features_min": sum(minutes[u] for u in cand["uses"]),
            "fits_min": fits,
            "n_repeats": result.n_repeats,
            **{m: result.intervals[m].to_dict() for m in ("auc", "balanced_accuracy")},
            **{m: result.intervals[m].to_dict() for m in ("sensitivity", "specificity")},
            "diff_balanced_accuracy": result.differences["balanced_accuracy"].to_dict(),
            "diff_auc": result.differences["auc"].to_dict(),
            "text": {
                m: _fmt(result.intervals[m])
                for m in ("auc", "balanced_accuracy", "sensitivity", "specificity")
            },
            "diff_text": _fmt(result.differences["balanced_accuracy"]),
        }
        if not rows:  # the baseline's own row, from the same folds
            rows.append(
                {
                    "name": "baseline: texture LR",
                    "settings": "ColorTextureFeatures + scaler + balanced LR, threshold 0.5",
                    "features_min": minutes["texture"],
                    "fits_min": float("nan"),
                    "n_repeats": result.n_repeats,
                    "text": {
                        m: _fmt(result.baseline_intervals[m])
                        for m in ("auc", "balanced_accuracy", "sensitivity", "specificity")
                    },
                    "diff_text": "0 (itself)",
                }
            )
            print(_table(rows[-1:], header=True), flush=True)
        rows.append(row)
        print(_table([row], header=False), flush=True)
    return rows


def _image_baseline() -> Any:
    """The colour/texture baseline on images (for the candidates trained on images)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skhybrid import ColorTextureFeatures

    return make_pipeline(
        ColorTextureFeatures(),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=3000),
    )


def _table(rows: list[dict[str, Any]], header: bool = True) -> str:
    lines = []
    if header:
        lines += [
            "| candidate | settings | ROC AUC | balanced acc. | sensitivity | specificity | "
            "bal. acc. - baseline | features min | fits min |",
            "|---|---|---|---|---|---|---|---:|---:|",
        ]
    for r in rows:
        t = r["text"]
        lines.append(
            f"| {r['name']} | {r['settings']} | {t['auc']} | {t['balanced_accuracy']} | "
            f"{t['sensitivity']} | {t['specificity']} | {r['diff_text']} | "
            f"{r['features_min']:.1f} | {r['fits_min']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the search; print the Markdown table and write ``OUT/recipe_search.json``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_search", description=__doc__)
    parser.add_argument("--dev-npz", type=Path, default=Path(DEFAULT_NPZ))
    parser.add_argument("--quick", action="store_true", help="1 repeat, 200 resamples")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the 4 folds")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="candidates whose name has TEXT")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--recipe", action="store_true", help="also evaluate recommended_pipeline() on images"
    )
    parser.add_argument(
        "--finetune", action="store_true", help="also train networks on the images (slow)"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for recipe_search.json")
    args = parser.parse_args(argv)
    if not args.dev_npz.exists():
        print(f"recipe_search skipped: {args.dev_npz} does not exist (pass --dev-npz PATH).")
        return 0
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = run(args)
    print("\n" + _table(rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recipe_search.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
