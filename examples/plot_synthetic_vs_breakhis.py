"""
Synthetic H&E images next to real BreakHis images
=================================================

``make_histology`` renders benign tissue (glands lined by small round nuclei in pink
stroma) and malignant tissue (nests of large, dark, irregular nuclei) on a 3x3 tile
grid, with known tile labels. This example draws four synthetic images, their tumour
tiles outlined, beside four real BreakHis images from the sample folder next to the
repository (``../shared/data/breakhis-sample``); without that folder it shows synthetic
images only.

Run ``python examples/plot_synthetic_vs_breakhis.py [output.png]``; the default output
is ``docs/images/synthetic_vs_breakhis.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file is the output; no display needed

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from skhybrid.datasets import load_breakhis, make_histology, tile_slices

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLE = REPOSITORY.parent / "shared" / "data" / "breakhis-sample"
OUTPUT = REPOSITORY / "docs" / "images" / "synthetic_vs_breakhis.png"


def pick_synthetic() -> tuple[np.ndarray, list[str], np.ndarray]:
    """Two benign and two malignant synthetic images with their tile labels."""
    data = make_histology(12, random_state=7)
    chosen = [*np.flatnonzero(data.target == 0)[:2], *np.flatnonzero(data.target == 1)[:2]]
    titles = [f"synthetic {data.target_names[data.target[i]]} ({data.patient[i]})" for i in chosen]
    return data.images[chosen], titles, data.tile_target[chosen]


def pick_breakhis() -> tuple[np.ndarray, list[str]] | None:
    """Two benign and two malignant real images, or None without the sample folder."""
    if not SAMPLE.is_dir():
        return None
    data = load_breakhis(SAMPLE, magnification=[100, 200, 400], verbose=False)
    chosen = []
    for label in (0, 1):
        for i in np.flatnonzero(data.target == label):
            # Different subtypes show the variety of real tissue.
            if data.subtype[i] not in {data.subtype[j] for j in chosen}:
                chosen.append(i)
            if sum(data.target[j] == label for j in chosen) == 2:
                break
    titles = [
        f"BreakHis {data.subtype[i].replace('_', ' ')} {data.magnification[i]}" for i in chosen
    ]
    return data.images[chosen], titles


def outline_tumour_tiles(ax, image_shape: tuple[int, ...], tile_labels: np.ndarray) -> None:
    for (rows, cols), label in zip(tile_slices(image_shape[:2], (3, 3)), tile_labels):
        if label:
            ax.add_patch(
                Rectangle(
                    (cols.start, rows.start),
                    cols.stop - cols.start - 1,
                    rows.stop - rows.start - 1,
                    fill=False,
                    edgecolor="gold",
                    linewidth=1.2,
                    linestyle="--",
                )
            )


def main(output: Path = OUTPUT) -> Path:
    synthetic, synthetic_titles, tile_labels = pick_synthetic()
    real = pick_breakhis()
    n_rows = 1 if real is None else 2
    fig, axes = plt.subplots(n_rows, 4, figsize=(16, 3.1 * n_rows), squeeze=False)
    for ax, image, title, labels in zip(axes[0], synthetic, synthetic_titles, tile_labels):
        ax.imshow(image)
        outline_tumour_tiles(ax, image.shape, labels)
        ax.set_title(title, fontsize=9)
    if real is not None:
        for ax, image, title in zip(axes[1], *real):
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(
        "make_histology (top; dashed: malignant tiles)"
        + ("" if real is None else " vs real BreakHis images (bottom)"),
        fontsize=11,
    )
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
