"""Save a fitted Pipeline with joblib and load it back (also on a CPU-only machine).

Usage::

    python examples/save_and_load_model.py [--out DIR] [--n-images 32]

The saved file is an ordinary joblib pickle of the scikit-learn Pipeline: ``joblib.load`` works,
and ``skhybrid.load_model`` adds clear errors for a missing or foreign file. The same file is
what ``skhybrid train`` writes and ``skhybrid predict`` / ``evaluate`` read. A model trained on a
GPU loads on a machine without one (its tensors are mapped to the CPU).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

from skhybrid import (
    HybridCNNLSTMClassifier,
    SubImageTiler,
    load_model,
    make_histology,
    save_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: a new temporary folder")
    parser.add_argument("--n-images", type=int, default=32, help="synthetic images (default: 32)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="skhybrid-"))
    out.mkdir(parents=True, exist_ok=True)

    data = make_histology(n_images=args.n_images, image_size=(96, 144), random_state=0)
    pipe = Pipeline(
        [
            ("tiles", SubImageTiler(tile_size=(32, 32))),
            (
                "clf",
                HybridCNNLSTMClassifier(
                    backbone="resnet18",
                    weights=None,
                    freeze_epochs=0,
                    max_epochs=2,
                    lr=1e-3,
                    batch_size=32,
                    random_state=0,
                    verbose=0,
                ),
            ),
        ]
    )
    pipe.fit(data.images, data.target)
    before = pipe.predict_proba(data.images)

    path = save_model(pipe, out / "model.joblib")
    print(f"Saved {path} ({path.stat().st_size / 1e6:.1f} MB)")

    for loader in (joblib.load, load_model):
        restored = loader(path)
        after = restored.predict_proba(data.images)
        print(
            f"{loader.__module__}.{loader.__name__}: identical predictions: "
            f"{np.array_equal(before, after)}"
        )
        assert np.array_equal(before, after)

    print(f"Try it on the command line: skhybrid predict {path} <image.png>")


if __name__ == "__main__":
    main()
