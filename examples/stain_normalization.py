"""Normalise the stain of H&E images (Macenko, Reinhard) and jitter it; save a before/after grid.

Usage::

    python examples/stain_normalization.py [--out DIR] [--n-images N]

Takes the real BreakHis 200x patches in ``../shared/data/breakhis-200x-patches/dev.npz`` when
that file exists, else synthetic ``make_histology`` images whose patients have strongly shifted
stains. The reference is the most typical image: the one whose mean CIELAB colour is closest
to the median of all. Writes ``stain_normalization.png`` into ``--out``:
one column per image, rows original / Macenko / Reinhard / stain jitter, and prints how far each
image's mean CIELAB colour is from the reference's before and after.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2lab

from skhybrid import make_histology
from skhybrid.nn.stain_augment import random_stain_jitter
from skhybrid.stain_normalization import StainNormalizer

PATCHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "breakhis-200x-patches"


def load_images(n_images: int) -> tuple[np.ndarray, str]:
    path = PATCHES / "dev.npz"
    if path.is_file():
        images = np.load(path)["images"]
        # Every 37th patch: different patients, so different stains.
        return images[:: max(1, len(images) // n_images)][:n_images], "BreakHis 200x patches"
    data = make_histology(
        n_images, image_size=(224, 224), grid=(1, 1), n_patients=n_images,
        stain_variation=0.2, random_state=0,
    )  # fmt: skip
    return data.images, "make_histology (stain_variation=0.2)"


def mean_lab(images: np.ndarray) -> np.ndarray:
    """Mean CIELAB colour ``(n, 3)`` of each image."""
    return rgb2lab(images / 255.0).reshape(len(images), -1, 3).mean(axis=1)


def lab_distance(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance of each image's mean CIELAB colour to the reference's (Delta E 1976)."""
    return np.linalg.norm(mean_lab(images) - mean_lab(reference[None]), axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output"))
    parser.add_argument("--n-images", type=int, default=6)
    args = parser.parse_args()

    from matplotlib.figure import Figure

    images, source = load_images(args.n_images)
    colours = mean_lab(images)
    typical = int(np.argmin(np.linalg.norm(colours - np.median(colours, axis=0), axis=1)))
    images = np.concatenate([images[typical : typical + 1], np.delete(images, typical, axis=0)])
    reference = images[:1]
    rows = {"original": images}
    for method in ("macenko", "reinhard"):
        rows[method] = StainNormalizer(method, reference=reference).fit_transform(images)
    jitter = random_stain_jitter(
        torch.from_numpy(images), 0.2, 0.2, generator=torch.Generator().manual_seed(0)
    )  # Tellez et al.'s strong setting, so the change is visible
    rows["stain jitter (0.2)"] = jitter.numpy()

    print(f"{source}: {len(images)} images of {images.shape[2]}x{images.shape[1]}")
    for name, row in rows.items():
        distance = lab_distance(row[1:], reference[0])
        print(f"{name:>20}: mean colour distance to the reference {distance.mean():.2f} (Delta E)")

    fig = Figure(figsize=(2 * len(images), 2.1 * len(rows)))
    axes = fig.subplots(len(rows), len(images), squeeze=False)
    for r, (name, row) in enumerate(rows.items()):
        for c, image in enumerate(row):
            axes[r, c].imshow(image)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    axes[0, 0].set_title("reference", fontsize=9)
    fig.suptitle(f"Stain normalisation and augmentation: {source}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "stain_normalization.png"
    fig.savefig(path, dpi=80)
    print(f"Saved {path}")


if __name__ == "__main__":
    main()
