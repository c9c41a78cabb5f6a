"""Shared test configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

# Several pytest-xdist workers on a 2-core machine: one torch thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)

# The tests fit many tiny linear models; several BLAS threads only add contention for them.
threadpool_limits(1, user_api="blas")

#: The 23 real BreakHis images next to the repository (absent in some checkouts).
BREAKHIS_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "breakhis-sample"


@pytest.fixture(scope="session")
def breakhis_sample() -> Path:
    """Path of the real BreakHis sample; skips the test when it is absent."""
    if not BREAKHIS_SAMPLE.is_dir():
        pytest.skip(f"real BreakHis sample not found at {BREAKHIS_SAMPLE}")
    return BREAKHIS_SAMPLE
