"""Peak memory as data grows: tiling, tiling from files, and the BreakHis loader.

Each measurement runs in a fresh interpreter (:func:`benchmarks._common.run_python`), so one
measurement's peak never hides another's. The baseline is the resident size after the imports
and a warm-up call; the figure is the *extra* peak resident memory
(``VmHWM`` minus the baseline, the peak reset after warm-up) as a multiple of the arrays that must exist:
the uint8 input pixels and the uint8 output tiles. A path that converts to float or keeps a
second copy shows up as a multiple well above 1.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._common import make_row, run_python, scale, skip_row

HEIGHT, WIDTH = 460, 700

_TILER_CODE = """
import numpy as np
import torch  # in the baseline: every skhybrid pipeline imports it anyway
from skhybrid.tiling import SubImageTiler
tiler = SubImageTiler(tile_size=(224, 224)).fit(np.zeros((1, 460, 700, 3), np.uint8))
tiler.transform(np.zeros((2, 460, 700, 3), np.uint8))  # warm the kernels and the allocator
block = np.random.default_rng(0).integers(0, 256, (8, 460, 700, 3), dtype=np.uint8)
_reset_peak()
base = _rss()
images = np.empty(({n}, 460, 700, 3), np.uint8)
for i in range({n}):
    images[i] = block[i % 8]  # touch every page: the input really is resident
bags = tiler.transform(images)
report(base=base, peak=_peak(), input=images.nbytes, output=bags.nbytes)
"""

_PATHS_CODE = """
import os
import numpy as np
import torch
from skhybrid.tiling import SubImageTiler
root = {root!r}
paths = sorted(os.path.join(root, name) for name in os.listdir(root))[:{n}]
tiler = SubImageTiler(tile_size=(224, 224), batch_size=32).fit(paths[:1])
tiler.transform(paths[:2])
_reset_peak()
base = _rss()
bags = tiler.transform(paths)
report(base=base, peak=_peak(), output=bags.nbytes, pixels=len(paths) * 460 * 700 * 3)
"""

_LOADER_CODE = """
from skhybrid.datasets import load_breakhis
load_breakhis({root!r}, verbose=False, image_size=(460, 700))  # warm: imports, thread pool
_reset_peak()
base = _rss()
data = load_breakhis({root!r}, verbose=False, image_size=(460, 700))
report(base=base, peak=_peak(), pixels=data.images.nbytes, n=len(data.images))
"""


_ESTIMATOR_CODE = """
import numpy as np
import torch
from torch import nn
from skhybrid.estimators import CNNClassifier
def tiny():
    # A tiny backbone: the figure is about how the estimator stores and moves the data,
    # not about activations, which are the same whatever the data size.
    return nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU())
def make(n):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 9, 224, 224, 3), dtype=np.uint8), rng.integers(0, 2, n)
bags, y = make(4)
est = CNNClassifier(tiny(), weights=None, max_epochs=1, freeze_epochs=0, batch_size=64,
                    device="cpu", verbose=0, random_state=0).fit(bags, y)  # warm-up
est.predict_proba(bags)
bags, y = make({n})
_reset_peak()
base = _rss()
est = CNNClassifier(tiny(), weights=None, max_epochs=1, freeze_epochs=0, batch_size=64,
                    device="cpu", verbose=0, random_state=0).fit(bags, y)
fit_peak = _peak()
_reset_peak()
base_predict = _rss()
est.predict_proba(bags)
report(fit=fit_peak - base, predict=_peak() - base_predict, data=bags.nbytes)
"""


def _write_tree(root: Path, n: int) -> None:
    """A flat folder of ``n`` BreakHis-named 700x460 PNGs (hard links to 8 distinct files)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    # Smooth-ish content decodes at a realistic speed (noise would be an unrealistic PNG).
    base = rng.integers(0, 256, (8, HEIGHT // 4, WIDTH // 4, 3), dtype=np.uint8)
    sources = []
    for i, small in enumerate(base):
        path = root / f"_source{i}.png.tmp"
        Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BILINEAR).save(
            path, format="PNG", compress_level=1
        )
        sources.append(path)
    for i in range(n):
        letter, code = ("B", "A") if i % 2 == 0 else ("M", "DC")
        slide = f"{1000 + i % 10}"
        name = f"SOB_{letter}_{code}-14-{slide}-40-{i:03d}.png"
        os.link(sources[i % 8], root / name)
    for path in sources:
        path.unlink()


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure peak memory; see the module docstring."""
    sizes = scale([100, 300, 1000], [100, 300], [4])
    rows = []
    for n in sizes:
        r = run_python(_TILER_CODE.format(n=n))
        extra = r["peak"] - r["base"]
        rows.append(
            make_row(
                f"memory: tile {n} images (array in) -> 9x224x224",
                extra / 1e6,
                (r["input"] + r["output"]) / 1e6,
                "MB",
                goal=1.25,
                goal_op="<=",
                reference_name="input + output pixels",
                note=f"{extra / r['input']:.2f}x the input pixels ({r['input'] / 1e6:.0f} MB)",
            )
        )
    rows += _estimator_rows()
    n_files = scale(300, 100, 4)
    with tempfile.TemporaryDirectory(prefix="skhybrid-bench-") as tmp:
        root = Path(tmp)
        _write_tree(root, n_files)
        r = run_python(_PATHS_CODE.format(root=str(root), n=n_files))
        extra = r["peak"] - r["base"]
        rows.append(
            make_row(
                f"memory: tile {n_files} PNG files (paths in, batch_size=32)",
                extra / 1e6,
                (r["output"] + 32 * HEIGHT * WIDTH * 3) / 1e6,
                "MB",
                goal=1.5,
                goal_op="<=",
                reference_name="output + one batch of decoded pixels",
                note=f"{extra / r['pixels']:.2f}x the pixels of all files: they are decoded a "
                "batch at a time, never all in memory",
            )
        )
        try:
            from skhybrid.datasets import load_breakhis  # noqa: F401
        except ImportError as exc:
            rows.append(skip_row("memory: load_breakhis", f"skipped: {exc}"))
            return rows
        r = run_python(_LOADER_CODE.format(root=str(root)))
        extra = r["peak"] - r["base"]
        rows.append(
            make_row(
                f"memory: load_breakhis on {r['n']} PNG files",
                extra / 1e6,
                r["pixels"] / 1e6,
                "MB",
                goal=1.5,
                goal_op="<=",
                reference_name="image pixels",
                note="flat folder of generated BreakHis-named files",
            )
        )
    return rows


#: (key in the measurement, estimator method) of the two steps measured.
_ESTIMATOR_STEPS = (("fit", "fit"), ("predict", "predict_proba"))


def _estimator_rows() -> list[dict[str, Any]]:
    """Extra peak of ``fit`` / ``predict_proba`` per data size, and how it grows with the data.

    Working memory is per batch (64 tiles 224x224: 9.6 MB uint8, 38.5 MB as float32, the
    normalised copy, the activations), so the extra peak must stay flat as the data grows:
    the growth rows compare the largest size with the smallest (goal <= 1.25x). The full run
    ends at 1000 bags, the issue's 1000-image data set, where the whole job (pixels + extra
    peak) must stay within a small multiple of the pixels.

    These processes run with a fixed glibc mmap threshold (``MALLOC_MMAP_THRESHOLD_``): glibc's
    default adapts it at run time and keeps freed batches in its heap or not depending on the
    order of frees, which moved the peak by +-30 MB from one run of the same job to the next
    and hid what the code itself allocates. With the threshold fixed, repeated runs agree to
    1 MB.
    """
    try:
        import skhybrid.estimators  # noqa: F401
    except ImportError as exc:
        return [skip_row("memory: estimators fit/predict", f"skipped: {exc}")]
    rows = []
    sizes = scale([100, 300, 1000], [50, 150], [2])
    batch = 64 * 224 * 224 * 3 * 4 / 1e6
    env = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    measured = {}
    for n in sizes:
        r = measured[n] = run_python(_ESTIMATOR_CODE.format(n=n), env=env)
        data = r["data"] / 1e6
        setting = f"{n} bags of 9 tiles 224x224 ({data:.0f} MB uint8), tiny backbone"
        for step, method in _ESTIMATOR_STEPS:
            extra = r[step] / 1e6
            rows.append(
                make_row(
                    f"memory: CNNClassifier.{method} on {n} bags",
                    extra,
                    data,
                    "MB",
                    reference_name="input pixels",
                    note=f"extra peak = {extra / batch:.1f} float32 batches of 64 tiles; {setting}",
                )
            )
    if len(sizes) > 1:
        small, large = measured[sizes[0]], measured[sizes[-1]]
        growth = f"{sizes[-1]} vs {sizes[0]} bags ({sizes[-1] / sizes[0]:.0f}x the data)"
        for step, method in _ESTIMATOR_STEPS:
            rows.append(
                make_row(
                    f"memory: CNNClassifier.{method} extra peak as the data grows",
                    large[step] / 1e6,
                    small[step] / 1e6,
                    "MB",
                    goal=1.25,
                    goal_op="<=",
                    reference_name=f"the same at {sizes[0]} bags",
                    note=growth,
                )
            )
    if sizes[-1] >= 1000:  # the 1000-image set; smaller sets are all working memory
        large = measured[sizes[-1]]
        data = large["data"]
        rows.append(
            make_row(
                f"memory: CNNClassifier fit + predict_proba on {sizes[-1]} bags, whole job",
                (data + max(large["fit"], large["predict"])) / 1e6,
                data / 1e6,
                "MB",
                goal=1.25,
                goal_op="<=",
                reference_name="input pixels",
                note="pixels + the larger extra peak: what the job needs beyond the interpreter",
            )
        )
    return rows
