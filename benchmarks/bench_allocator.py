"""jemalloc (``LD_PRELOAD``) against glibc's malloc for PyTorch CPU training and inference.

The same script (resnet18 training steps and inference forwards on uint8 tiles, skhybrid's
CNN module, in fp32 and in bf16 autocast) runs in fresh processes with glibc's malloc, with
``LD_PRELOAD=libjemalloc.so.2`` and its default settings, and with the ``MALLOC_CONF`` that
PyTorch's CPU tuning guide suggests, one after the other; each row compares the median step
times with glibc's. Skipped when no jemalloc library is installed (Debian/Ubuntu:
``apt-get install libjemalloc2``).
"""

from __future__ import annotations

import glob
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
def train_step(index):
    module.train()
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(module(torch.from_numpy(tiles[index])), y[index])
    loss.backward()
    optimizer.step()
def forward(index):
    module.eval()
    with torch.inference_mode():
        module(torch.from_numpy(tiles[index])).softmax(1)
result = {{}}
for name, step in (("train", train_step), ("forward", forward)):
    for precision in ("fp32", "bf16"):
        times = []
        for i in range(n_steps + 2):
            index = rng.permutation(len(tiles))[:batch]
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                step(index)
            if i >= 2:  # warm-up: kernel selection, allocator growth
                times.append(time.perf_counter() - start)
        result[name + " " + precision] = float(np.median(times))
report(peak=_peak(), **result)
"""

#: The setting PyTorch's CPU performance guide suggests with jemalloc: huge allocations from
#: the arenas and freed pages kept, to avoid page faults on every large temporary tensor.
TUNED_MALLOC_CONF = (
    "oversize_threshold:1,background_thread:true,metadata_thp:auto,"
    "dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000"
)

_STEPS = ("train fp32", "train bf16", "forward fp32", "forward bf16")


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
    batch = scale(32, 32, 8)
    code = _CODE.format(size=size, steps=scale(6, 6, 1), batch=batch)
    allocators = {
        "glibc": {"LD_PRELOAD": ""},
        "jemalloc": {"LD_PRELOAD": library, "MALLOC_CONF": ""},
        "jemalloc, tuned": {"LD_PRELOAD": library, "MALLOC_CONF": TUNED_MALLOC_CONF},
    }
    times: dict[str, dict[str, float]] = {}
    peaks = {}
    for allocator, env in allocators.items():  # one fresh process each
        r = run_python(code, env=env)
        peaks[allocator] = r["peak"]
        times[allocator] = {step: r[step] for step in _STEPS}
    rows = []
    for allocator in ("jemalloc", "jemalloc, tuned"):
        for step in _STEPS:
            kind, precision = step.split()
            what = "training step" if kind == "train" else "inference forward"
            rows.append(
                make_row(
                    f"allocator: {allocator} vs glibc, resnet18 {what} {precision} {size}x{size}",
                    batch / times[allocator][step],
                    batch / times["glibc"][step],
                    "tiles/s",
                    reference_name="glibc malloc",
                    note=f"batch {batch}; peak RSS {peaks[allocator] / 1e6:.0f} MB, glibc "
                    f"{peaks['glibc'] / 1e6:.0f} MB; {library}",
                )
            )
    return rows
