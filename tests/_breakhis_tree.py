"""Build small fake BreakHis folders for tests (reusable by any test module).

The images come from :func:`skhybrid.datasets.make_histology`, so a model trained on a
fake tree can learn something; names and folders follow the official BreakHis layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from skhybrid.datasets import make_histology

BENIGN_CODES = ("A", "F", "PT", "TA")
MALIGNANT_CODES = ("DC", "LC", "MC", "PC")
SUBTYPE_FOLDERS = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}


def breakhis_name(
    malignant: bool, code: str, slide: str, magnification: int, sequence: int, year: int = 14
) -> str:
    """File name such as ``SOB_B_A-14-22549AB-40-001.png``."""
    letter = "M" if malignant else "B"
    return f"SOB_{letter}_{code}-{year}-{slide}-{magnification}-{sequence:03d}.png"


def breakhis_path(root: Path, name: str, layout: str = "official") -> Path:
    """Where BreakHis keeps the file ``name`` under ``root`` (or ``root/name`` if flat)."""
    if layout == "flat":
        return Path(root) / name
    stem = name.removesuffix(".png")
    prefix, year, slide, magnification, _ = stem.split("-")
    _, letter, code = prefix.split("_")
    tumour_class = "malignant" if letter == "M" else "benign"
    slide_folder = f"SOB_{letter}_{code}_{year}-{slide}"
    return (
        Path(root)
        / "BreaKHis_v1/histology_slides/breast"
        / tumour_class
        / "SOB"
        / SUBTYPE_FOLDERS[code]
        / slide_folder
        / f"{magnification}X"
        / name
    )


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Low compression: the tests write many files and never care about their size.
    Image.fromarray(image).save(path, compress_level=1)
    return path


def write_truncated_png(path: Path, image: np.ndarray) -> Path:
    """A PNG cut off in the middle of its image data, as an interrupted copy leaves it."""
    write_png(path, image)
    data = path.read_bytes()
    path.write_bytes(data[: max(len(data) // 2, 60)])
    return path


def make_breakhis_tree(
    root: str | Path,
    n_per_class: int = 8,
    *,
    image_size: tuple[int, int] = (46, 70),
    magnifications: Sequence[int] = (40, 100, 200, 400),
    slides_per_subtype: int = 2,
    layout: str = "official",
    random_state: int = 0,
) -> list[Path]:
    """Write a fake BreakHis data set of valid, correctly named PNG files.

    Image ``i`` of a class gets subtype ``codes[i % 4]``, magnification
    ``magnifications[i % len(magnifications)]`` and slide ``(i // 4) % slides_per_subtype``
    of that subtype. Slides come in pairs sharing a patient number, as BreakHis'
    ``22549AB`` and ``22549CD`` do: slide ``j`` of subtype ``k`` is
    ``f"{10000 + 100 * k + j // 2}{['AB', 'CD'][j % 2]}"``.

    Parameters
    ----------
    root : str or Path
        Folder to write into (created if needed).
    n_per_class : int, default=8
        Images per class (benign, malignant).
    image_size : tuple of int, default=(46, 70)
        ``(height, width)``; use ``(460, 700)`` for real-sized images.
    magnifications : sequence of int, default=(40, 100, 200, 400)
        Magnifications to cycle through.
    slides_per_subtype : int, default=2
        Slides per subtype.
    layout : {"official", "flat"}, default="official"
        The ``BreaKHis_v1/histology_slides/breast/...`` tree, or all files in ``root``.
    random_state : int, default=0
        Seed of the synthetic tissue.

    Returns
    -------
    list of Path
        The written files, benign first.
    """
    root = Path(root)
    data = make_histology(
        2 * n_per_class,
        image_size=image_size,
        malignant_fraction=0.5,
        n_patients=min(4, 2 * n_per_class),
        random_state=random_state,
    )
    paths = []
    for malignant, codes in ((False, BENIGN_CODES), (True, MALIGNANT_CODES)):
        images = data.images[data.target == int(malignant)]
        for i, image in enumerate(images):
            k = i % 4
            slide_index = (i // 4) % slides_per_subtype
            code_index = k + 4 * malignant
            slide = f"{10000 + 100 * code_index + slide_index // 2}{['AB', 'CD'][slide_index % 2]}"
            magnification = magnifications[i % len(magnifications)]
            name = breakhis_name(malignant, codes[k], slide, magnification, sequence=i + 1)
            paths.append(write_png(breakhis_path(root, name, layout), image))
    return paths
