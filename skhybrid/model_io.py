"""Saving and loading fitted skhybrid models with joblib.

A saved model is a plain joblib file of a fitted scikit-learn estimator (usually the
``Pipeline`` of a :class:`~skhybrid.tiling.SubImageTiler` and a classifier), so
``joblib.load(path)`` works too; :func:`load_model` adds the checks and clear errors a user
needs when the file is missing, is not a joblib file or holds something else.

.. warning:: Loading a joblib file runs pickle code: load only files you trust.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib

from .exceptions import PathNotFoundError, UserError

__all__ = ["load_model", "save_model"]


def save_model(
    model: Any, path: str | os.PathLike[str], *, keep_optimizer_state: bool = True
) -> Path:
    """Write a fitted estimator to ``path`` with joblib and return the path.

    Parameters
    ----------
    model : estimator
        A fitted scikit-learn estimator or Pipeline.
    path : str or path-like
        Destination file (``.joblib`` by convention); its folder must exist.
    keep_optimizer_state : bool, default=True
        Adam keeps two values per weight, so a network's file is about three times its
        weights. ``False`` writes the networks without that state (a third of the size, the
        same predictions): enough to predict, evaluate or fine-tune from (Adam then starts
        afresh). The model in memory is not changed.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise PathNotFoundError(f"Folder {path.parent} does not exist; create it first.")
    if not hasattr(model, "predict"):
        raise TypeError(f"Only fitted estimators can be saved, got {type(model).__name__}.")
    # Write next to the target and rename, so an interrupted save never leaves half a model.
    partial = path.with_name(path.name + ".partial")
    with contextlib.ExitStack() as stack:
        if not keep_optimizer_state:
            for optimizer in _optimizers(model):
                stack.enter_context(_without_state(optimizer))
        joblib.dump(model, partial)
    partial.replace(path)
    return path


def _optimizers(model: Any) -> list[Any]:
    """The torch optimizers of the skorch networks inside ``model`` (pipelines and
    meta-estimators included), each once."""
    import torch

    found: dict[int, Any] = {}
    stack, seen = [model], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        optimizer = getattr(obj, "optimizer_", None)
        if isinstance(optimizer, torch.optim.Optimizer):
            found[id(optimizer)] = optimizer
        stack.extend(step for _, step in getattr(obj, "steps", None) or [])
        names = ("estimator_", "estimator", "best_estimator_")
        stack.extend(getattr(obj, name, None) for name in names)
    return list(found.values())


@contextlib.contextmanager
def _without_state(optimizer: Any) -> Iterator[None]:
    """Hide the optimizer's per-parameter state (Adam's moments) while the block runs."""
    state = optimizer.state
    optimizer.state = defaultdict(dict)
    try:
        yield
    finally:
        optimizer.state = state


def load_model(
    path: str | os.PathLike[str], *, require_tiler: bool = False, whole_images: bool = False
) -> Any:
    """Load a model written by :func:`save_model`, ``joblib.dump`` or ``skhybrid train``.

    A model trained on a GPU loads on a CPU-only machine (the estimators map their tensors to
    the CPU when CUDA is missing).

    Parameters
    ----------
    path : str or path-like
        The joblib file.
    require_tiler : bool, default=False
        Also require a ``Pipeline`` whose first step is a fitted ``SubImageTiler`` (what the
        command line's ``predict`` and ``evaluate`` need to take whole images).
    whole_images : bool, default=False
        Require a model that takes whole images: such a tile Pipeline, or a fitted Pipeline
        that does not start with a network (a recipe of :mod:`skhybrid.recipes`, which
        describes whole images itself). What ``skhybrid evaluate`` and ``predict`` load.

    Returns
    -------
    model : estimator

    Raises
    ------
    PathNotFoundError
        (a ``FileNotFoundError``) When ``path`` does not exist.
    UserError
        (a ``ValueError``) When the file is not a joblib file or holds no fitted
        skhybrid-compatible model.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import check_is_fitted

    from .tiling import SubImageTiler

    path = Path(path)
    if not path.is_file():
        raise PathNotFoundError(f"Model file not found: {path}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # joblib raises many types for a foreign file
        raise UserError(
            f"{path} is not a skhybrid model (joblib could not read it: {exc}). "
            "Models are written by `skhybrid train` or skhybrid.save_model."
        ) from exc
    if not hasattr(model, "predict") or not hasattr(model, "get_params"):
        raise UserError(
            f"{path} holds a {type(model).__name__}, not a fitted scikit-learn estimator; "
            "models are written by `skhybrid train` or skhybrid.save_model."
        )
    if whole_images and isinstance(model, Pipeline):
        from .estimators import TileNetClassifier

        first = model.steps[0][1]
        if not isinstance(first, (SubImageTiler, TileNetClassifier)):
            check_is_fitted(model)
            return model  # a whole-image recipe
    if require_tiler or whole_images:
        if not isinstance(model, Pipeline) or not isinstance(model.steps[0][1], SubImageTiler):
            raise UserError(
                f"{path} holds a {type(model).__name__} that does not start with a "
                "SubImageTiler, so it cannot take whole images; save a "
                "Pipeline([('tiles', SubImageTiler(...)), ('clf', ...)])."
            )
        check_is_fitted(model.steps[0][1])
    return model
