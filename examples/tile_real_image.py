"""Tile a real BreakHis image (or a synthetic one) and plot the grid and the nine tiles.

Usage::

    python examples/tile_real_image.py [IMAGE.png] [--out DIR]

Without an image it takes the first file of ``../shared/data/breakhis-sample`` when that folder
exists, else a synthetic image from ``make_histology``. Writes ``tiles.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from skhybrid import SubImageTiler, make_histology
from skhybrid._images import load_rgb

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "breakhis-sample"


def pick_image(path: Path | None) -> tuple[np.ndarray, str]:
    if path is not None:
        return load_rgb(path), path.name
    found = sorted(SAMPLE.rglob("*.png")) if SAMPLE.is_dir() else []
    if found:
        return load_rgb(found[0]), found[0].name
    data = make_histology(n_images=2, random_state=0)
    return data.images[-1], "synthetic image (make_histology)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=Path("example-output"))
    args = parser.parse_args()

    from matplotlib.figure import Figure

    image, name = pick_image(args.image)
    tiler = SubImageTiler(grid=(3, 3), tile_size=(224, 224))
    bags = tiler.fit_transform(image[np.newaxis])
    print(
        f"{name}: {image.shape[1]}x{image.shape[0]} -> {bags.shape[1]} tiles of "
        f"{bags.shape[3]}x{bags.shape[2]} (native {SubImageTiler().fit(image[None]).tile_shape_[::-1]})"
    )

    fig = Figure(figsize=(13, 4.6))
    left = fig.add_axes((0.01, 0.02, 0.5, 0.9))
    left.imshow(image)
    rows, cols = tiler.grid
    tile_h, tile_w = image.shape[0] // rows, image.shape[1] // cols
    for r in range(1, rows):
        left.axhline(r * tile_h, color="white", lw=2)
    for c in range(1, cols):
        left.axvline(c * tile_w, color="white", lw=2)
    left.set_title(name, fontsize=9)
    left.axis("off")
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        ax = fig.add_axes((0.53 + c * 0.155, 0.64 - r * 0.31, 0.15, 0.28))
        ax.imshow(bags[0, index])
        ax.set_title(f"tile {index}", fontsize=8)
        ax.axis("off")
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "tiles.png", dpi=100)
    print(f"Wrote {args.out / 'tiles.png'}")


if __name__ == "__main__":
    main()
