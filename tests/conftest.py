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

# bf16 kernels on the CPU sum in an order that can change from run to run, and many tests
# compare two fits or predictions bit for bit: precision="auto" stays fp32 here (also in the
# subprocesses the tests start). The bf16 paths are tested with precision="bf16" explicitly.
os.environ["SKHYBRID_CPU_BF16"] = "0"

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
