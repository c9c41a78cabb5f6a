"""Device choice, seeding and mixed precision shared by the estimators."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = [
    "CPU_BF16_ENV",
    "PRECISIONS",
    "autocast",
    "cpu_has_fast_bf16",
    "resolve_device",
    "resolve_precision",
    "seed_from",
    "seeded_torch",
]

PRECISIONS = ("auto", "fp32", "bf16")


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


#: Environment variable overriding what ``precision="auto"`` does on the CPU: ``0`` keeps fp32
#: (bit-for-bit repeatable runs, e.g. a test suite), ``1`` forces bf16, unset or ``auto`` asks
#: the CPU.
CPU_BF16_ENV = "SKHYBRID_CPU_BF16"


@functools.lru_cache(maxsize=1)
def _cpu_flags_have_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to know, stay exact
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_fast_bf16() -> bool:
    """Whether ``precision="auto"`` uses bf16 on this CPU: AVX-512 BF16 or AMX present.

    Without these instructions oneDNN emulates bf16 with conversions, which is no faster than
    fp32, so ``"auto"`` stays in fp32 there. The ``SKHYBRID_CPU_BF16`` environment variable
    (``0`` / ``1``) overrides the detection.
    """
    setting = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    return _cpu_flags_have_bf16()


def resolve_precision(precision: str, device: str) -> str:
    """``"auto"`` -> ``"bf16"`` where the device computes bf16 natively, else ``"fp32"``.

    bf16 autocast on such hardware is 2-3x faster for convolutions and changes probabilities
    by about 1e-3 (docs/performance.md); fp32 master weights keep training stable.
    """
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast for ``precision="bf16"`` (or ``"auto"`` resolving to it); a no-op
    for ``"fp32"``."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
