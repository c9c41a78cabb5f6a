"""jemalloc (``LD_PRELOAD``) against glibc's malloc for a PyTorch CPU training loop.

The same script (resnet18 training steps on uint8 tiles, skhybrid's CNN module) runs in fresh
processes with and without ``LD_PRELOAD=libjemalloc.so.2``, alternately; the row compares the
median step times. Skipped when no jemalloc library is installed
(Debian/Ubuntu: ``apt-get install libjemalloc2``).
"""

from __future__ import annotations

import glob
import statistics
from typing import Any

from ._common import SkipBenchmark, make_row, run_python, scale

_CODE = """
import time
import numpy as np
import torch
from skhybrid.nn import CNN
size, n_steps, batch = {size}, {steps}, {batch}
module = CNN("resnet18", 2, weights=None, tile_shape=(size, size))
optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
rng = np.random.default_rng(0)
tiles = rng.integers(0, 256, (batch * 4, size, size, 3), dtype=np.uint8)
y = torch.from_numpy(rng.integers(0, 2, batch * 4))
times = []
for step in range(n_steps + 2):
    index = rng.permutation(len(tiles))[:batch]
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(tiles[index])), y[index])
    loss.backward()
    optimizer.step()
    if step >= 2:  # warm-up: kernel selection, allocator growth
        times.append(time.perf_counter() - start)
report(step=float(np.median(times)), peak=_peak())
"""


def _find_jemalloc() -> str | None:
    for pattern in (
        "/usr/lib/*/libjemalloc.so.2",
        "/usr/lib/libjemalloc.so.2",
        "/usr/local/lib/libjemalloc.so*",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def run(quick: bool) -> list[dict[str, Any]]:
    """Compare allocators; see the module docstring."""
    library = _find_jemalloc()
    if library is None:
        raise SkipBenchmark("libjemalloc.so.2 not found (apt-get install libjemalloc2)")
    try:
        import skhybrid.nn  # noqa: F401
    except ImportError as exc:
        raise SkipBenchmark(f"skhybrid.nn is not available ({exc})") from exc
    size = scale(224, 64, 32)
    code = _CODE.format(size=size, steps=scale(8, 8, 2), batch=scale(32, 32, 8))
    glibc, jemalloc, peaks = [], [], {}
    for _ in range(scale(2, 2, 1)):
        r = run_python(code, env={"LD_PRELOAD": ""})
        glibc.append(r["step"])
        peaks["glibc"] = r["peak"]
        r = run_python(code, env={"LD_PRELOAD": library})
        jemalloc.append(r["step"])
        peaks["jemalloc"] = r["peak"]
    batch = scale(32, 32, 8)
    return [
        make_row(
            f"allocator: jemalloc vs glibc, resnet18 training step {size}x{size}",
            batch / statistics.median(jemalloc),
            batch / statistics.median(glibc),
            "tiles/s",
            reference_name="glibc malloc",
            note=f"peak RSS {peaks['jemalloc'] / 1e6:.0f} MB with jemalloc, "
            f"{peaks['glibc'] / 1e6:.0f} MB with glibc; {library}",
        )
    ]
