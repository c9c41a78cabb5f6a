"""``skhybrid train --recipe``: which recipe a training run fits, and the options each takes.

``recommended`` (the default) is :func:`skhybrid.recipes.recommended_pipeline`, the recipe that
measured best on real BreakHis patches split patient-wise (``docs/results.md``): colour/texture
statistics of the whole image, a soft vote of a balanced logistic regression and a balanced
RBF support-vector machine, and a decision threshold tuned on inner patient folds of the
training patients. It trains no network, so the network options mean nothing to it: given
with it, they are refused with the option that selects the network (``--recipe paper``)
rather than ignored. ``paper`` is the paper's method as ``skhybrid train`` always ran it:
3x3 tiles, self-learning, the hybrid CNN-LSTM (or ``--model cnn``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .exceptions import UserError

__all__ = ["NETWORK_OPTIONS", "add_recipe_option", "check_recipe_options", "recipe_model"]

#: ``train`` options that configure the network recipe only (tiles, self-learning, the
#: network and its training). The cross-validation options apply to both recipes.
NETWORK_OPTIONS = (
    "--model", "--backbone", "--weights", "--fusion", "--epochs", "--freeze-epochs", "--lr",
    "--batch-size", "--aggregation", "--device", "--precision", "--keep-optimizer-state",
    "--self-learning-rounds", "--relabel-with", "--split", "--tile-size",
)  # fmt: skip


def add_recipe_option(parser: argparse.ArgumentParser) -> None:
    """``--recipe {recommended,paper}`` (default ``recommended``)."""
    from .recipes import RECIPES

    parser.add_argument(
        "--recipe",
        choices=RECIPES,
        default=RECIPES[0],
        help="recommended: the colour/texture model with a threshold tuned on inner patient "
        "folds, the best measured on real tissue (docs/results.md; seconds on a CPU, no "
        "network); paper: the paper's tiles, self-learning and hybrid CNN-LSTM, which the "
        "model, protocol and cross-validation options configure",
    )
    parser.add_argument(
        "--calibration",
        choices=("none", "sigmoid", "isotonic"),
        default="none",
        help="(recommended recipe) map its probabilities to frequencies of the training "
        "patients, fitted on the same inner folds as the threshold: Platt scaling or isotonic "
        "regression; the threshold is then chosen on the calibrated scale (docs/results.md)",
    )


def _given(command_line: Sequence[str]) -> list[str]:
    """The long options typed on the command line (``--lr=1e-3`` counts as ``--lr``)."""
    return [token.split("=", 1)[0] for token in command_line if token.startswith("--")]


def check_recipe_options(args: argparse.Namespace) -> None:
    """Refuse what the chosen recipe cannot do, before any image is read.

    Raises
    ------
    UserError
        Network options with the recommended recipe, or a target it does not decide.
    """
    given = _given(args.command_line)
    if args.recipe != "recommended":
        if "--calibration" in given:
            raise UserError(
                "--calibration is an option of the recommended recipe (its threshold and "
                "probabilities); the network of --recipe paper decides at the larger probability"
            )
        return
    network = [option for option in dict.fromkeys(given) if option in NETWORK_OPTIONS]
    if network:
        chosen = "--recipe recommended" if "--recipe" in given else "the default recipe"
        raise UserError(
            f"{', '.join(network)} configure(s) the network recipe: add --recipe paper. "
            f"{chosen.capitalize()} (recommended: colour/texture statistics, a balanced "
            "logistic regression + SVM vote and a threshold tuned on inner patient folds) "
            "trains no network; it measured best on real tissue (docs/results.md)"
        )
    if args.target != "binary":
        raise UserError(
            f"--target {args.target}: the recommended recipe decides benign vs malignant (its "
            "threshold is binary); train the subtypes with --recipe paper"
        )


def recipe_model(args: argparse.Namespace) -> Any:
    """The unfitted recommended recipe with the options that apply to it."""
    from .recipes import make_recipe

    class_weight = None if args.class_weight == "none" else args.class_weight
    calibration = None if args.calibration == "none" else args.calibration
    return make_recipe(
        "recommended", class_weight=class_weight, calibration=calibration, random_state=args.seed
    )
