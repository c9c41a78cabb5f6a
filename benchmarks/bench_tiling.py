"""Tiler throughput: 700x460 BreakHis-size images -> 9 tiles of 224x224.

Rows
----
- ``SubImageTiler`` against a naive Pillow loop (crop + resize each tile): goal >= 300 images/s
  on 2 cores (the goal is on the tiler's own throughput; the ratio shows the gain over Pillow).
- ``SubImageTiler`` against its previous implementation (one ``F.interpolate`` over 64-image
  batches, then a copy into the output): what the fast path bought.
- The first call in a fresh process (``import torch`` included) against the warm throughput.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import compare, make_row, run_python, scale

HEIGHT, WIDTH, TILE = 460, 700, (224, 224)


def _images(n: int) -> np.ndarray:
    # Content does not change the cost of bilinear resizing; noise is the worst case for the
    # accuracy check below.
    return np.random.default_rng(0).integers(0, 256, (n, HEIGHT, WIDTH, 3), dtype=np.uint8)


def naive_pillow(images: np.ndarray) -> np.ndarray:
    """The obvious loop: a PIL image per input, crop and resize each of its 9 tiles."""
    from PIL import Image

    out = np.empty((len(images), 9, *TILE, 3), dtype=np.uint8)
    tile_h, tile_w = HEIGHT // 3, WIDTH // 3
    for i, image in enumerate(images):
        pil = Image.fromarray(image)
        for r in range(3):
            for c in range(3):
                box = (c * tile_w, r * tile_h, (c + 1) * tile_w, (r + 1) * tile_h)
                tile = pil.crop(box).resize(TILE[::-1], Image.BILINEAR)
                out[i, r * 3 + c] = np.asarray(tile)
    return out


def previous_tiler(images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """SubImageTiler before the fast path: F.interpolate over whole batches, then a copy."""
    from skhybrid.tiling import _resize_reference, tile_image_array

    out = np.empty((len(images), 9, *TILE, 3), dtype=np.uint8)
    for start in range(0, len(images), batch_size):
        bags = tile_image_array(images[start : start + batch_size])
        n, t, h, w, c = bags.shape
        resized = _resize_reference(bags.reshape(-1, h, w, c), TILE, "bilinear", True)
        out[start : start + n] = resized.reshape(n, t, *TILE, c)
    return out


def _cold_start(n: int) -> dict[str, float]:
    code = f"""
import time
t0 = time.perf_counter()
import numpy as np
images = np.random.default_rng(0).integers(0, 256, ({n}, {HEIGHT}, {WIDTH}, 3), dtype=np.uint8)
t1 = time.perf_counter()
from skhybrid.tiling import SubImageTiler
tiler = SubImageTiler(tile_size={TILE}).fit(images[:1])
tiler.transform(images)
t2 = time.perf_counter()
tiler.transform(images)
t3 = time.perf_counter()
report(cold=t2 - t1, warm=t3 - t2)
"""
    return run_python(code)


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure the tiler; see the module docstring."""
    from skhybrid.tiling import SubImageTiler

    n = scale(200, 64, 4)
    n_pillow = scale(60, 24, 2)  # the slow reference needs fewer images for a stable figure
    repeat = scale(5, 3, 1)
    images = _images(n)
    tiler = SubImageTiler(grid=(3, 3), tile_size=TILE).fit(images[:1])

    times = compare(
        {
            "tiler": lambda: tiler.transform(images),
            "previous": lambda: previous_tiler(images),
        },
        repeat=repeat,
    )
    pillow_time = compare({"pillow": lambda: naive_pillow(images[:n_pillow])}, repeat=repeat)
    rate = n / times["tiler"]
    pillow_rate = n_pillow / pillow_time["pillow"]
    previous_rate = n / times["previous"]

    fast = tiler.transform(images[:2])
    diff = np.abs(fast.astype(np.int16) - naive_pillow(images[:2]).astype(np.int16))
    same_as_previous = bool(np.array_equal(fast, previous_tiler(images[:2])))
    rows = [
        make_row(
            "tiling: SubImageTiler 700x460 -> 9x224x224",
            rate,
            pillow_rate,
            "images/s",
            goal=300,
            goal_on="value",
            reference_name="naive Pillow loop",
            note=f"{n} images; vs Pillow: mean abs diff {diff.mean():.3f}, max {diff.max()} "
            "grey levels",
        ),
        make_row(
            "tiling: fast path vs previous implementation",
            rate,
            previous_rate,
            "images/s",
            goal=1.0,
            reference_name="F.interpolate over 64-image batches",
            note=f"bit-identical: {same_as_previous}",
        ),
    ]
    if not (quick and n < 10):  # not in smoke runs: a subprocess with torch costs seconds
        cold = _cold_start(n)
        rows.append(
            make_row(
                "tiling: first call in a fresh process (import torch included)",
                n / cold["cold"],
                n / cold["warm"],
                "images/s",
                reference_name="second call",
                note="one-off cost of importing torch (~1-2 s), paid once per process",
            )
        )
    return rows
