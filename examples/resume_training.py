"""A training that survives Ctrl-C: a checkpoint every epoch, and a resume to the same model.

Usage::

    python examples/resume_training.py [--epochs 6] [--stop-after 3] [--out resume-example]

``skhybrid.estimators.fit_resumable(estimator, folder, X, y)`` fits with a
``TrainingCheckpoint`` in ``folder`` (written atomically at the end of every epoch), or, when
the folder already holds one, continues it. Here the first call is interrupted as Ctrl-C
would interrupt it (a ``KeyboardInterrupt`` in the middle of an epoch, which skorch turns into
the end of training): ``fit_resumable`` raises ``TrainingInterrupted`` carrying the best model
so far. The second call, as a new process would make it after a kill, resumes from the
checkpoint and ends with exactly the weights of a fit that was never interrupted (fp32,
seeded), which the script checks. ``skhybrid train --resume OUT`` is built on the same call.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

from skhybrid import CNNClassifier, SubImageTiler, make_histology
from skhybrid.estimators import fit_resumable
from skhybrid.exceptions import TrainingInterrupted

#: Whether the Ctrl-C is still to come (module state: the callback itself is cloned and
#: pickled into the checkpoint, and must not fire again on the resume).
_ARMED = {"ctrl_c": True}


class CtrlC(Callback):
    """Raise KeyboardInterrupt once, in the middle of epoch ``epoch``'s training batches."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_batch_end(self, net, training=False, **kwargs) -> None:
        if training and _ARMED["ctrl_c"] and len(net.history) == self.epoch:
            _ARMED["ctrl_c"] = False
            raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--stop-after", type=int, default=3, help="Ctrl-C during this epoch")
    parser.add_argument("--out", type=Path, default=Path("resume-example"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = make_histology(n_images=24, image_size=(64, 96), random_state=0)
    bags = SubImageTiler(grid=(3, 3), tile_size=(32, 32)).fit_transform(data.images)
    y = np.asarray(data.target_names)[data.target]
    settings = {
        "backbone": "mobilenet_v3_small", "weights": None, "max_epochs": args.epochs, "lr": 1e-3,
        "batch_size": 32, "precision": "fp32", "random_state": 0, "verbose": 0,
    }  # fmt: skip

    straight = CNNClassifier(**settings).fit(bags, y, groups=data.patient)

    shutil.rmtree(args.out, ignore_errors=True)
    interrupted = CNNClassifier(**settings, callbacks=[("ctrl_c", CtrlC(args.stop_after))])
    try:
        fit_resumable(interrupted, args.out, bags, y, groups=data.patient)
    except TrainingInterrupted as stop:
        print(
            f"interrupted after epoch {stop.epoch}; the best model so far is in "
            f"stop.estimator ({len(stop.estimator.history)} history rows); checkpoint in "
            f"{stop.checkpoint}"
        )
    resumed = fit_resumable(interrupted, args.out, bags, y, groups=data.patient)
    same = all(
        torch.equal(a, b)
        for a, b in zip(
            resumed.module_.state_dict().values(), straight.module_.state_dict().values()
        )
    )
    print(f"resumed to epoch {len(resumed.history)} of {args.epochs}")
    print(f"weights identical to the uninterrupted fit: {same}")
    agree = np.array_equal(resumed.predict_proba(bags), straight.predict_proba(bags))
    print(f"probabilities identical: {agree}")


if __name__ == "__main__":
    main()
