"""Device choice, seeding and mixed precision shared by the estimators."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["PRECISIONS", "autocast", "resolve_device", "seed_from", "seeded_torch"]

PRECISIONS = ("fp32", "bf16")


def resolve_device(device: Any) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; other values as given."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(torch.device(device)) if device is not None else "cpu"


def seed_from(random_state: Any) -> int | None:
    """An int seed from a scikit-learn ``random_state`` (``None`` stays ``None``)."""
    if random_state is None:
        return None
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def seeded_torch(seed: int | None, device: str) -> Iterator[None]:
    """Seed torch's global RNGs inside the block and restore the caller's RNG state after.

    Weight initialisation, shuffling, dropout and augmentation all draw from these RNGs, so
    one seed makes a CPU fit repeatable without changing the user's global random state.
    """
    if seed is None:
        yield
        return
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast for ``precision="bf16"``; a no-op for ``"fp32"``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
