"""Peak memory of a whole BreakHis magnification: list, tile from the paths, fit, predict.

A run on real folders holds one array that cannot be avoided, the uint8 tiles (2000 images
of 700x460 at 40X are 18 000 tiles of 224x224, 2.7 GB), plus the model and one batch. This
benchmark writes a data set of that size to a temporary folder in the BreakHis layout
(``breast/<benign|malignant>/SOB/<subtype>/<slide>/40X/SOB_*.png``, distinct noise-like
"tissue" per image, written a few at a time by two threads: never all in memory) and runs,
in a fresh interpreter, the steps of a real run:

1. ``load_breakhis(root, magnification=40, load_images=False)``: file names and labels;
2. ``SubImageTiler(grid=(3, 3), tile_size=(224, 224))`` on the paths: one uint8 bag array;
3. ``CNNClassifier(tiny, weights=None, max_epochs=1, batch_size=128, valid_size=0.2)``
   ``.fit(bags, y, groups=patient)`` (``cache_features`` and ``freeze_epochs`` as default,
   so the one epoch is the frozen phase with the feature cache), with a tiny backbone (one
   strided conv) so that the 2-core CPU finishes in minutes: the figure is about how the
   library stores and moves the data, not about a large network's activations;
4. ``predict_proba(bags)``.

The figure is the extra peak resident memory (``VmHWM`` minus the resident size after the
imports and a warm-up run of the same steps on 4 images) over
``uint8 tiles + model (parameters and buffers) + one float32 batch of 128 tiles``; goal
``<= 1.5``. The same job is run a second time with the tiles in a ``.npy`` file
(:func:`skhybrid.tiling.tile_to_memmap`, then ``np.load(..., mmap_mode="r")``): there the
figure that matters is the peak *anonymous* memory (sampled every 10 ms), the memory the
kernel cannot drop (pages of the file read by training are page cache), against the
in-memory run's working memory (its extra peak minus its tiles); goal ``<= 1.25``. Children run with the
fixed ``MALLOC_MMAP_THRESHOLD_`` of :mod:`benchmarks.bench_memory` so that repeated runs
agree.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ._common import make_row, run_python, scale, skip_row

HEIGHT, WIDTH = 460, 700
TILE = 224
N_TILES = 9
BATCH = 128
#: BreakHis at all four magnifications.
ALL_MAGNIFICATIONS = 7909
#: The machine the four magnifications must fit on.
TARGET_MEMORY = 24 * 2**30

_SUBTYPES = {
    "B": [("A", "adenosis"), ("F", "fibroadenoma"), ("PT", "phyllodes_tumor")],
    "M": [("DC", "ductal_carcinoma"), ("LC", "lobular_carcinoma"), ("MC", "mucinous_carcinoma")],
}

_CODE = """
import gc, threading, time
import numpy as np
import torch
from torch import nn
from skhybrid.datasets import load_breakhis
from skhybrid.estimators import CNNClassifier
from skhybrid.tiling import SubImageTiler, tile_to_memmap

def _anon():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) * 1024
    return 0

class _AnonPeak(threading.Thread):
    # RssAnon has no high-water mark in /proc: sample it.
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = _anon(), True
    def run(self):
        while self.running:
            self.peak = max(self.peak, _anon())
            time.sleep(0.01)
    def take(self):
        # The peak since the last call (one step's), then start the next step's from now.
        peak, self.peak = max(self.peak, _anon()), _anon()
        return peak

SAMPLER = None

def mark():
    return _peak(), SAMPLER.take() if SAMPLER else _anon(), time.perf_counter()

def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU())

def job(root, memmap_path, n=None):
    data = load_breakhis(root, magnification=40, load_images=False, verbose=False)
    paths, y, groups = list(data.filenames), data.target, data.patient
    if n is not None:  # warm-up: two images of each class
        pick = np.r_[np.flatnonzero(y == 0)[:n // 2], np.flatnonzero(y == 1)[:n // 2]]
        paths, y, groups = [paths[i] for i in pick], y[pick], np.arange(len(pick))
    marks = {{"list": mark()}}
    tiler = SubImageTiler(grid=(3, 3), tile_size=({tile}, {tile}))
    if memmap_path is None:
        bags = tiler.fit_transform(paths)
    else:
        tile_to_memmap(paths, memmap_path, tiler)  # its read-write mapping is closed here
        bags = np.load(memmap_path, mmap_mode="r")
    marks["tile"] = mark()
    est = CNNClassifier(tiny(), weights=None, max_epochs=1, batch_size={batch}, valid_size=0.2,
                        device="cpu", verbose=0, random_state=0).fit(bags, y, groups=groups)
    marks["fit"] = mark()
    proba = est.predict_proba(bags)
    marks["predict"] = mark()
    model = sum(t.numel() * t.element_size() for t in est.module_.state_dict().values())
    return marks, model, bags.nbytes, len(paths), float(proba.sum())

memmap = {memmap!r}
job({root!r}, None if memmap is None else memmap + ".warm.npy", n=4)
gc.collect()
_reset_peak()
base, base_anon, start = _rss(), _anon(), time.perf_counter()
SAMPLER = _AnonPeak()
SAMPLER.start()
marks, model, tiles, n, total = job({root!r}, memmap)
SAMPLER.running = False
SAMPLER.join()
report(base=base, base_anon=base_anon, anon_peak=max(m[1] for m in marks.values()), model=model,
       tiles=tiles, n=n, proba_sum=total,
       marks={{k: [p, a, t - start] for k, (p, a, t) in marks.items()}})
"""


def _tissue(index: int) -> np.ndarray:
    """A distinct 700x460 noise-like "H&E" image: random pink-purple blobs, smoothed."""
    from PIL import Image

    rng = np.random.default_rng(index)
    low = rng.random((HEIGHT // 4, WIDTH // 4, 1))
    # Pink (eosin) to purple (haematoxylin), brighter background where `low` is high.
    pink, purple = np.array([232.0, 150.0, 200.0]), np.array([120.0, 60.0, 160.0])
    small = (purple + (pink - purple) * low).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BILINEAR))


def _patients(n: int) -> int:
    """BreakHis has 82 patients for ~2000 images per magnification; at least 2 per class."""
    return max(4, min(82, n // 24))


def _file_of(root: Path, index: int, n_patients: int) -> Path:
    """BreakHis path of image ``index``: patient ``index % n_patients``, alternating classes."""
    patient = index % n_patients
    letter = "B" if patient % 2 == 0 else "M"
    code, subtype = _SUBTYPES[letter][(patient // 2) % len(_SUBTYPES[letter])]
    slide = f"SOB_{letter}_{code}-14-{10000 + patient}"
    kind = "benign" if letter == "B" else "malignant"
    folder = root / "breast" / kind / "SOB" / subtype / slide / "40X"
    return folder / f"{slide}-40-{index // n_patients + 1:03d}.png"


def write_breakhis_tree(root: Path, n: int, *, threads: int = 2) -> None:
    """Write ``n`` distinct 700x460 PNGs in the BreakHis folder layout under ``root``.

    One image per task, ``threads`` at a time (Pillow releases the GIL while compressing), at
    ``compress_level=1``: about 45 ms an image on one core; memory is a few images.
    """
    from PIL import Image

    n_patients = _patients(n)

    def write(index: int) -> None:
        path = _file_of(root, index, n_patients)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_tissue(index)).save(path, format="PNG", compress_level=1)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(write, range(n)):
            pass


def _batch_bytes() -> int:
    """One float32 batch of 128 tiles, the normalised input the model sees."""
    return BATCH * 3 * TILE * TILE * 4


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure a whole magnification's peak memory; see the module docstring."""
    try:
        import skhybrid.estimators  # noqa: F401
        from skhybrid.datasets import load_breakhis  # noqa: F401
    except ImportError as exc:
        return [skip_row("whole magnification", f"skipped: {exc}")]
    n = scale(2000, 200, 8)
    env = {
        "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    with tempfile.TemporaryDirectory(prefix="skhybrid-bench-breakhis-") as tmp:
        root = Path(tmp) / "BreaKHis_v1" / "histology_slides"
        write_breakhis_tree(root, n)
        code = {"root": str(root), "tile": TILE, "batch": BATCH}
        timeout = 3600 if n >= 1000 else 900
        memory = run_python(_CODE.format(memmap=None, **code), env=env, timeout=timeout)
        mapped = run_python(
            _CODE.format(memmap=str(Path(tmp) / "bags.npy"), **code), env=env, timeout=timeout
        )
    return _rows(memory, mapped)


def _steps(r: dict[str, Any], anonymous: bool = False) -> str:
    """Per step: the cumulative extra peak (or that step's anonymous extra peak) and when it
    ended, for the notes."""
    return ", ".join(
        f"{step} {((anon - r['base_anon']) if anonymous else (peak - r['base'])) / 1e6:.0f} MB "
        f"at {seconds:.0f} s"
        for step, (peak, anon, seconds) in r["marks"].items()
    )


def _rows(memory: dict[str, Any], mapped: dict[str, Any]) -> list[dict[str, Any]]:
    n, tiles, model = memory["n"], memory["tiles"], memory["model"]
    bound = tiles + model + _batch_bytes()
    peak = memory["marks"]["predict"][0]
    extra = peak - memory["base"]
    rows = [
        make_row(
            f"whole magnification: {n} images -> {n * N_TILES} tiles in memory, extra peak",
            extra / 1e6,
            bound / 1e6,
            "MB",
            goal=1.5,
            goal_op="<=",
            reference_name="uint8 tiles + model + one float32 batch of 128",
            note=f"list, tile from paths, fit 1 epoch (tiny conv), predict_proba; cumulative "
            f"peak: {_steps(memory)}",
        ),
        make_row(
            f"whole magnification: {n} images, tiles in memory, whole process",
            peak / 1e6,
            bound / 1e6,
            "MB",
            reference_name="uint8 tiles + model + one float32 batch of 128",
            note=f"VmHWM including the interpreter, torch and skhybrid "
            f"({memory['base'] / 1e6:.0f} MB after imports and warm-up)",
        ),
    ]
    # The four magnifications, in memory: the baseline plus the measured ratio, scaled.
    ratio = extra / bound
    all_tiles = ALL_MAGNIFICATIONS * N_TILES * TILE * TILE * 3
    projected = memory["base"] + ratio * (all_tiles + model + _batch_bytes())
    rows.append(
        make_row(
            f"whole magnification: projected peak of all {ALL_MAGNIFICATIONS} images in memory",
            projected / 2**30,
            TARGET_MEMORY / 2**30,
            "GiB",
            goal=1.0,
            goal_op="<=",
            reference_name="a 24 GiB machine",
            note=f"{all_tiles / 1e9:.1f} GB of tiles x the measured {ratio:.2f} + the "
            f"{memory['base'] / 2**30:.2f} GiB baseline; the OS and page cache need room too",
        )
    )
    # With the tiles on disk the anonymous memory must be the job's working memory only:
    # what the in-memory run needs beyond its tiles (decoded batches, float batches).
    anon = mapped["anon_peak"] - mapped["base_anon"]
    working = max(extra - tiles, 1)
    rows.append(
        make_row(
            f"whole magnification: {n} images, tiles memory-mapped (tile_to_memmap), "
            "anonymous extra peak",
            anon / 1e6,
            working / 1e6,
            "MB",
            goal=1.25,
            goal_op="<=",
            reference_name="the in-memory run's extra peak minus its tiles (working memory)",
            note=f"sampled RssAnon, the memory the kernel cannot drop: "
            f"{anon / mapped['tiles']:.2f}x the {mapped['tiles'] / 1e6:.0f} MB of tiles; "
            f"VmHWM (with the file's page cache) "
            f"{(mapped['marks']['predict'][0] - mapped['base']) / 1e6:.0f} MB extra; "
            f"anonymous peak per step: {_steps(mapped, anonymous=True)}; same probabilities "
            f"as in memory: {abs(mapped['proba_sum'] - memory['proba_sum']) < 1e-6 * n}",
        )
    )
    return rows
