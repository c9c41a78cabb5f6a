"""The ``skhybrid`` command line: ``demo``, ``train``, ``evaluate`` and ``predict``.

Every command splits patient-wise unless told otherwise, prints a paper-style report and writes
what it measured to an output folder. Errors a user can fix (a wrong path, a bad option, missing
weights) are printed as one line, not a traceback (``--traceback`` shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

_DEMO_DEFAULTS = {
    "n_images": 96,
    "image_size": (230, 350),
    "tile_size": (48, 48),
    "backbone": "resnet18",
    "epochs": 12,
    "rounds": 4,
}


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


# -- argument helpers ---------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    """Parse ``224`` or ``224x224`` (height x width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive numbers, got {text!r}")
    return parts[0], parts[1]


def _weights(text: str) -> str | None:
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(
            f"weights must be 'imagenet', 'none' or an existing state-dict file, got {text!r}"
        )
    return text


def _model_options(parser: argparse.ArgumentParser, *, backbone: str, epochs: int) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        choices=("hybrid", "cnn"),
        default="hybrid",
        help="hybrid CNN-LSTM (the paper's) or the plain CNN baseline",
    )
    group.add_argument(
        "--backbone",
        default=backbone,
        help=f"vgg19, googlenet, resnet101 (the paper's), resnet18, ... (default: {backbone})",
    )
    group.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="imagenet, none (train from scratch) or a state-dict file (default: none)",
    )
    group.add_argument(
        "--fusion", default="attention", choices=("attention", "concat", "sum", "product")
    )
    group.add_argument("--epochs", type=int, default=epochs, help=f"max epochs (default: {epochs})")
    group.add_argument(
        "--freeze-epochs",
        type=int,
        default=None,
        help="phase 1 epochs with the CNN frozen (default: 0 without pretrained weights, 5 with)",
    )
    group.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: 1e-4 as in the paper with pretrained "
        "weights, 1e-3 from scratch)",
    )
    group.add_argument(
        "--batch-size", type=int, default=None, help="default: 128 (the paper's); 32 for the demo"
    )
    group.add_argument(
        "--aggregation",
        choices=("mean", "max", "vote", "mil"),
        default=None,
        help="how tile probabilities make an image probability (default: mil, an image is "
        "malignant as soon as one tile is, with self-learning; mean without)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    group.add_argument(
        "--keep-optimizer-state",
        action="store_true",
        help="also save Adam's state in model.joblib (3x the size), to continue training "
        "exactly where it stopped; without it the file is for prediction and fine-tuning",
    )


def _protocol_options(parser: argparse.ArgumentParser, *, rounds: int) -> None:
    group = parser.add_argument_group("protocol")
    group.add_argument(
        "--self-learning-rounds",
        type=int,
        default=rounds,
        help=f"rounds of tile relabeling, 0 to skip (default: {rounds})",
    )
    group.add_argument(
        "--relabel-with",
        choices=("features", "model"),
        default="features",
        help="tile classifier proposing label corrections: fast colour/texture "
        "features + logistic regression, or the model itself as in the "
        "paper (slow) (default: features)",
    )
    group.add_argument(
        "--split",
        choices=("patient", "random-tile"),
        default="patient",
        help="patient: honest patient-wise split (default); random-tile: the "
        "paper's random split of tiles, which leaks",
    )
    group.add_argument("--test-size", type=float, default=0.25)
    group.add_argument("--seed", type=int, default=0)


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="skhybrid",
        description="Hybrid CNN-LSTM histopathology classification with self-learning "
        "sub-image labels (BreakHis).",
    )
    parser.add_argument("--version", action="version", version=f"skhybrid {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="the whole method on the embedded synthetic data set",
        description="Synthetic H&E images -> 3x3 tiles -> self-learning relabeling -> hybrid "
        "CNN-LSTM trained from scratch -> patient-wise evaluation. Writes report.json, "
        "self_learning_history.md (with rounds > 0), ROC / precision-recall PNGs and "
        "model.joblib into --out.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.add_argument("--n-images", type=int, default=_DEMO_DEFAULTS["n_images"])
    demo.add_argument(
        "--image-size",
        type=_size,
        default=_DEMO_DEFAULTS["image_size"],
        help="synthetic image size HxW (default: 230x350, half of BreakHis)",
    )
    demo.add_argument(
        "--tile-size",
        type=_size,
        default=_DEMO_DEFAULTS["tile_size"],
        help="tiles are resized to this (default: 48; the paper uses 224)",
    )
    demo.add_argument("--difficulty", type=float, default=0.3)
    _model_options(demo, backbone=_DEMO_DEFAULTS["backbone"], epochs=_DEMO_DEFAULTS["epochs"])
    _protocol_options(demo, rounds=_DEMO_DEFAULTS["rounds"])
    demo.add_argument(
        "-q", "--quiet", action="store_true", help="no progress messages or epoch table"
    )

    train = sub.add_parser(
        "train",
        help="train on a BreakHis folder",
        description="Load BreakHis images, tile them, correct tile labels, train and evaluate "
        "on held-out patients. Writes model.joblib and report.json into --out.",
    )
    train.add_argument("data_dir", type=Path, help="BreakHis folder (official tree or flat)")
    train.add_argument(
        "--magnification", default=None, help="40X, 100X, 200X or 400X (default: all)"
    )
    train.add_argument(
        "--tile-size",
        type=_size,
        default=(224, 224),
        help="tiles are resized to this (default: 224 as in the paper)",
    )
    train.add_argument("--out", type=Path, default=Path("skhybrid-model"))
    train.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="threads decoding the PNG files (default: 1; -1: all cores)",
    )
    _model_options(train, backbone="resnet101", epochs=100)
    _protocol_options(train, rounds=4)
    train.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, messages or epoch table"
    )

    evaluate = sub.add_parser(
        "evaluate",
        help="score a saved model on new BreakHis images (held-out patients)",
        description="Image-level report (accuracy, sensitivity, specificity, precision, F1, "
        "AUC) and the patient recognition rate of a saved model on every image of DATA_DIR. "
        "It does not split: give it a folder of patients the model was not trained on. "
        "`skhybrid train` already reports the held-out patient-wise test score in its "
        "report.json; evaluating on the training folder scores training patients and "
        "overstates performance.",
    )
    evaluate.add_argument("model", type=Path, help="model.joblib written by `skhybrid train`")
    evaluate.add_argument(
        "data_dir", type=Path, help="BreakHis folder of patients the model has not seen"
    )
    evaluate.add_argument(
        "--magnification", default=None, help="40X, 100X, 200X or 400X (default: all)"
    )
    evaluate.add_argument("--out", type=Path, default=None, help="folder for report.json and plots")
    evaluate.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the report (no line saying what is being scored)",
    )

    predict = sub.add_parser(
        "predict",
        help="classify image files",
        description="Per image: label, probability of malignancy, and the tile probabilities "
        "as a grid; optionally an overlay PNG of the grid on the image.",
    )
    predict.add_argument("model", type=Path)
    predict.add_argument("images", type=Path, nargs="+")
    predict.add_argument(
        "--overlay", type=Path, default=None, help="folder for <image>_overlay.png files"
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


# -- commands -----------------------------------------------------------------------------------
def _classifier_params(args: argparse.Namespace, *, demo: bool) -> dict[str, Any]:
    from .workflow import default_aggregation

    pretrained = args.weights is not None
    return {
        "backbone": args.backbone,
        "weights": args.weights,
        "fusion": args.fusion,
        "max_epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs
        if args.freeze_epochs is not None
        else (5 if pretrained else 0),
        "lr": args.lr if args.lr is not None else (1e-4 if pretrained else 1e-3),
        "batch_size": args.batch_size or (32 if demo else 128),
        "aggregation": args.aggregation or default_aggregation(args.self_learning_rounds),
        "device": args.device,
        "random_state": args.seed,
        "verbose": 0 if args.quiet else 1,
    }


def _print_result(result: Any) -> None:
    from .metrics import format_reports

    if result.protocol != "patient":
        print(
            "\nWARNING: random split of tiles: tiles of one image sit on both sides; these "
            "scores overstate performance on new patients."
        )
    print("\n" + format_reports(result.reports))
    if result.patient_score is not None:
        print(f"\nPatient recognition rate: {result.patient_score:.4f}")


def _run(
    args: argparse.Namespace, X: Any, y: Any, patients: Any, tile_truth: Any, *, demo: bool
) -> int:
    from .tiling import SubImageTiler
    from .workflow import make_classifier, run_experiment

    if args.self_learning_rounds < 0:
        raise UserError("--self-learning-rounds must be >= 0")
    if not 0 < args.test_size < 0.5 + 1e-9:
        raise UserError("--test-size must be in (0, 0.5]")
    classifier = make_classifier(args.model, **_classifier_params(args, demo=demo))
    result = run_experiment(
        X,
        y,
        patients,
        classifier=classifier,
        tiler=SubImageTiler(grid=(3, 3), tile_size=args.tile_size),
        protocol=args.split,
        self_learning_rounds=args.self_learning_rounds,
        relabel_with=args.relabel_with,
        tile_truth=tile_truth,
        test_size=args.test_size,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    )
    _print_result(result)
    written = result.save(args.out, keep_optimizer_state=args.keep_optimizer_state)
    print(f"\nWrote {', '.join(str(p) for p in written)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .datasets import make_histology

    if args.n_images < 16:
        raise UserError(
            "--n-images must be at least 16 (a patient-wise split needs several patients per class)"
        )
    data = make_histology(
        n_images=args.n_images,
        image_size=args.image_size,
        difficulty=args.difficulty,
        random_state=args.seed,
    )
    names = np.asarray(data.target_names)
    if not args.quiet:
        print(
            f"Synthetic data set: {len(data.target)} images of {args.image_size[0]}x"
            f"{args.image_size[1]}, {len(np.unique(data.patient))} patients."
        )
    return _run(
        args, data.images, names[data.target], data.patient, names[data.tile_target], demo=True
    )


def _load_breakhis(args: argparse.Namespace, *, load_images: bool) -> Any:
    from .datasets import load_breakhis

    if not args.data_dir.exists():
        raise UserError(f"data folder not found: {args.data_dir}")
    return load_breakhis(
        args.data_dir,
        magnification=args.magnification,
        n_jobs=getattr(args, "n_jobs", None),  # evaluate reads pixels later, in the tiler
        load_images=load_images,
        verbose=not args.quiet,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    data = _load_breakhis(args, load_images=True)
    names = np.asarray(data.target_names)
    if not args.quiet:
        print(
            f"BreakHis: {len(data.target)} images, {len(np.unique(data.patient))} slides, "
            f"magnification {args.magnification or 'all'}."
        )
    return _run(args, data.images, names[data.target], data.patient, None, demo=False)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .metrics import format_reports
    from .model_io import load_model
    from .workflow import ExperimentResult, score_images

    model = load_model(args.model, require_tiler=True)
    data = _load_breakhis(args, load_images=False)
    names = np.asarray(data.target_names)
    if not args.quiet:
        # Only the file names are listed here; the saved tiler decodes the images in batches.
        print(
            f"Scoring {args.model} on {len(data.target)} images of "
            f"{len(np.unique(data.patient))} slides under {args.data_dir}, magnification "
            f"{args.magnification or 'all'} ..."
        )
    reports, rate, curves = score_images(
        model, list(data.filenames), names[data.target], data.patient
    )
    print(format_reports(reports))
    print(f"\nPatient recognition rate: {rate:.4f}")
    if args.out is not None:
        result = ExperimentResult(
            protocol="patient",
            reports=reports,
            patient_score=rate,
            history=[],
            history_table="",
            tile_label_accuracy={},
            model=model,
            curves=curves,
            info={
                "model": str(args.model),
                "data_dir": str(args.data_dir),
                "n_images": len(data.target),
                "magnification": args.magnification,
            },
        )
        written = result.save(args.out, save_model=False)
        print(f"\nWrote {', '.join(str(p) for p in written)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .class_roles import roles_of
    from .model_io import load_model
    from .overlay import save_tile_overlay

    model = load_model(args.model, require_tiler=True)
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise UserError(f"image file(s) not found: {', '.join(missing)}")
    tiler, classifier = model.steps[0][1], model.steps[-1][1]
    if not hasattr(classifier, "predict_proba_tiles"):
        raise UserError(
            f"{args.model} holds a {type(classifier).__name__} without tile probabilities"
        )
    bags = tiler.transform([str(p) for p in args.images])
    classes = np.asarray(classifier.classes_)
    positive = roles_of(classifier).positive_index
    image_proba = classifier.predict_proba(bags)
    tile_proba = classifier.predict_proba_tiles(bags)[..., positive]
    rows, cols = tiler.grid
    results = []
    for path, proba, tiles in zip(args.images, image_proba, tile_proba):
        grid = tiles.reshape(rows, cols)
        entry = {
            "image": str(path),
            "label": str(classes[proba.argmax()]),
            "probability": {str(c): round(float(p), 4) for c, p in zip(classes, proba)},
            "tile_probability_grid": np.round(grid, 4).tolist(),
        }
        if args.overlay is not None:
            args.overlay.mkdir(parents=True, exist_ok=True)
            target = args.overlay / f"{path.stem}_overlay.png"
            save_tile_overlay(path, grid, target, grid_shape=(rows, cols), crop=tiler.remainder)
            entry["overlay"] = str(target)
        results.append(entry)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for entry, proba in zip(results, image_proba):
        print(f"{entry['image']}: {entry['label']} (P(malignant) = {float(proba[positive]):.3f})")
        print("  tile P(malignant), row by row:")
        for row in entry["tile_probability_grid"]:
            print("    " + "  ".join(f"{p:.2f}" for p in row))
        if "overlay" in entry:
            print(f"  overlay: {entry['overlay']}")
    return 0


_COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (UserError, FileNotFoundError, ValueError, TypeError, ImportError) as exc:
        if args.traceback:
            raise
        print(f"skhybrid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
