"""Loader for the BreakHis breast histopathology images (``load_breakhis``)."""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from .._images import UnreadableImageError, to_rgb_image
from ..exceptions import DataError, PathNotFoundError, UserError

__all__ = ["BREAKHIS_SUBTYPES", "TARGETS", "load_breakhis", "parse_breakhis_filename"]

#: File-name code -> BreakHis folder name, benign subtypes first; the order of the
#: ``target="subtype"`` labels.
BREAKHIS_SUBTYPES = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}
_BENIGN_CODES = ("A", "F", "PT", "TA")
#: The label sets of ``target=``: benign/malignant, or the eight subtypes.
TARGETS = ("binary", "subtype")
_MAGNIFICATIONS = ("40X", "100X", "200X", "400X")

# SOB_<B|M>_<subtype>-<year>-<slide>-<magnification>-<sequence>.png
_NAME = re.compile(
    r"^SOB_(?P<tumour_class>[BM])_(?P<code>[A-Z]+)-(?P<year>\d+)-(?P<slide>\d+[A-Z]*)"
    r"-(?P<magnification>\d+)-(?P<sequence>\d+)\.png$",
    re.IGNORECASE,
)


class _BadName(DataError):
    """A file name that is not BreakHis'; ``reason`` says why without repeating the path."""

    def __init__(self, path: str | os.PathLike, reason: str, *, joiner: str = ": ") -> None:
        super().__init__(f"{os.fspath(path)!r}{joiner}{reason}")
        self.reason = reason


@dataclass(frozen=True)
class BreakHisName:
    """What a BreakHis file name says about its image."""

    malignant: bool
    subtype: str  # folder name, e.g. "ductal_carcinoma"
    magnification: str  # "40X", "100X", "200X" or "400X"
    patient: str  # slide folder, e.g. "SOB_B_A_14-22549AB"
    patient_number: str  # e.g. "22549", shared by slides 22549AB and 22549CD


def parse_breakhis_filename(path: str | os.PathLike) -> BreakHisName:
    """Parse a BreakHis file name such as ``SOB_B_A-14-22549AB-40-001.png``.

    Parameters
    ----------
    path : str or path-like
        File name or path; only the name is parsed.

    Returns
    -------
    BreakHisName
        Class, subtype, magnification and patient ids.

    Raises
    ------
    DataError
        (a ``ValueError``) If the name does not follow the BreakHis pattern, names an unknown subtype or
        magnification, or pairs a benign class letter with a malignant subtype (or the
        reverse) -- a label from such a name could be wrong, so it is refused.
    """
    name = Path(path).name
    match = _NAME.match(name)
    if match is None:
        raise _BadName(
            path,
            "is not a BreakHis file name "
            "(expected SOB_<B|M>_<subtype>-<year>-<slide>-<magnification>-<seq>.png, "
            "e.g. SOB_B_A-14-22549AB-40-001.png).",
            joiner=" ",
        )
    tumour_class, code = match["tumour_class"].upper(), match["code"].upper()
    if code not in BREAKHIS_SUBTYPES:
        raise _BadName(
            path, f"unknown subtype code {code!r}; expected one of {sorted(BREAKHIS_SUBTYPES)}."
        )
    if (tumour_class == "B") != (code in _BENIGN_CODES):
        raise _BadName(path, f"class letter {tumour_class!r} contradicts subtype {code!r}.")
    magnification = f"{int(match['magnification'])}X"
    if magnification not in _MAGNIFICATIONS:
        raise _BadName(
            path,
            f"unknown magnification {magnification!r}; expected one of {list(_MAGNIFICATIONS)}.",
        )
    slide = match["slide"].upper()
    return BreakHisName(
        malignant=tumour_class == "M",
        subtype=BREAKHIS_SUBTYPES[code],
        magnification=magnification,
        patient=f"SOB_{tumour_class}_{code}_{match['year']}-{slide}",
        patient_number=re.match(r"\d+", slide)[0],
    )


def _normalise_magnifications(magnification) -> tuple[str, ...] | None:
    """``None`` or a tuple of canonical names such as ``"40X"``."""
    if magnification is None:
        return None
    values = (
        [magnification]
        if isinstance(magnification, (str, int, np.integer))
        else list(magnification)
    )
    canonical = []
    for value in values:
        text = str(value).strip().upper()
        text = text if text.endswith("X") else f"{text}X"
        if text not in _MAGNIFICATIONS:
            raise UserError(
                f"Unknown magnification {value!r}; valid values are "
                f"{list(_MAGNIFICATIONS)} (also as 40, '40' or '40x') or None for all."
            )
        canonical.append(text)
    if not canonical:
        raise UserError("magnification is an empty collection; use None for all.")
    return tuple(dict.fromkeys(canonical))


def _find_pngs(root: Path) -> list[Path]:
    # Sorted so that the order of the returned samples does not depend on the file system.
    return sorted(
        path for path in root.rglob("*") if path.suffix.lower() == ".png" and path.is_file()
    )


def _parse_all(
    paths: list[Path], on_error: str
) -> tuple[list[Path], list[BreakHisName], dict[str, str]]:
    """The paths whose names parse, their names, and ``{path: reason}`` of the others."""
    kept, names, skipped = [], [], {}
    for path in paths:
        try:
            names.append(parse_breakhis_filename(path))
        except _BadName as error:
            if on_error == "raise":
                raise
            warnings.warn(f"Skipping {path}: {error}", UserWarning, stacklevel=3)
            skipped[str(path)] = error.reason
            continue
        kept.append(path)
    return kept, names, skipped


def _reason(error: BaseException) -> str:
    """Why a file could not be read, without the "Cannot read image PATH:" wrapper."""
    cause = error.__cause__ if isinstance(error, UnreadableImageError) else None
    return str(cause or error) or type(error).__name__


def _read_image(
    path: Path, image_size: tuple[int, int], on_size_mismatch: str
) -> tuple[np.ndarray, bool]:
    """Decode one image to ``image_size`` RGB; returns it and whether it was resized."""
    with Image.open(path) as image:
        image.load()  # decode now, so truncated files fail here and not later
        rgb = to_rgb_image(image, str(path))  # the one conversion rule (alpha, 16-bit ...)
    height, width = image_size
    if rgb.size == (width, height):
        return np.asarray(rgb), False
    if on_size_mismatch == "error":
        raise DataError(
            f"{path} is {rgb.size[1]}x{rgb.size[0]} (height x width), expected "
            f"{height}x{width}; pass on_size_mismatch='resize' to resize it."
        )
    return np.asarray(rgb.resize((width, height), Image.BILINEAR)), True


def _image_size_of(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError) as error:  # image_size=None reads the first file's header
        raise UnreadableImageError(
            f"Cannot read image {path}: {error}; pass image_size=(height, width) to take the "
            "size from the arguments instead of this file."
        ) from error
    return height, width


def _load_pixels(
    paths: list[Path],
    image_size: tuple[int, int],
    on_size_mismatch: str,
    on_error: str,
    n_jobs: int | None,
    verbose: bool,
) -> tuple[np.ndarray, np.ndarray, dict[str, str], list[str]]:
    """Decode all images into one preallocated array.

    Returns the images, a mask of the paths that loaded, ``{path: reason}`` of the skipped
    ones and the resized paths.
    """
    # Preallocated and filled in place: stacking a list would need twice the memory,
    # and the whole of BreakHis is ~7.6 GB of pixels.
    images = np.empty((len(paths), *image_size, 3), dtype=np.uint8)

    def load(i: int) -> tuple[int, str | None, bool]:
        try:
            images[i], resized = _read_image(paths[i], image_size, on_size_mismatch)
        except UnreadableImageError as error:  # a mode to_rgb_image refuses (float ...)
            if on_error == "raise":
                raise
            return i, _reason(error), False
        except (OSError, SyntaxError, Image.DecompressionBombError) as error:
            if on_error == "raise":
                # Also a ValueError: the command line reports it as a one-line error.
                raise UnreadableImageError(f"Cannot read image {paths[i]}: {error}") from error
            return i, _reason(error), False
        return i, None, resized

    # Threads: Pillow releases the GIL while decoding, and threads can write into `images`.
    tasks = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(
        delayed(load)(i) for i in range(len(paths))
    )
    loaded = np.ones(len(paths), dtype=bool)
    skipped, resized = {}, []
    for i, error, was_resized in tqdm(
        tasks, total=len(paths), desc="Loading BreakHis", unit="img", disable=not verbose
    ):
        if error is not None:
            warnings.warn(f"Skipping unreadable image {paths[i]}: {error}", stacklevel=3)
            loaded[i] = False
            skipped[str(paths[i])] = error
        elif was_resized:
            resized.append(str(paths[i]))
    return images, loaded, skipped, sorted(resized)


def _compact(images: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``images[keep]`` without a second copy of the array: rows move down in place."""
    for new, old in enumerate(np.flatnonzero(keep)):
        if new != old:
            images[new] = images[old]
    count = int(keep.sum())
    images.resize((count, *images.shape[1:]), refcheck=False)
    return images


def load_breakhis(
    root: str | os.PathLike,
    magnification=None,
    target: str = "binary",
    *,
    load_images: bool = True,
    image_size: tuple[int, int] | None = (460, 700),
    on_size_mismatch: str = "resize",
    on_error: str = "raise",
    n_jobs: int | None = None,
    verbose: bool = True,
) -> Bunch:
    """Load BreakHis breast-tumour histology images with their labels and patient ids.

    BreakHis (Spanhol et al., 2016) holds 7,909 RGB images of 700x460 pixels from 82
    patients, at four magnifications, of four benign and four malignant tumour
    subtypes. This function does not download it: point ``root`` at a copy.

    Labels and ids are parsed from the file names
    ``SOB_<B|M>_<subtype>-<year>-<slide>-<magnification>-<seq>.png``, never from the
    folders, so the official tree
    ``BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/<slide>/<mag>X/``
    (with ``root`` at any of its levels) and flat folders of the original files both
    work; PNG files are searched recursively.

    Read more in the :ref:`User Guide <datasets>` (``docs/datasets.md``).

    Parameters
    ----------
    root : str or path-like
        Folder containing BreakHis PNG files at any depth.
    magnification : None, int, str or iterable of them, default=None
        Magnifications to load: ``None`` for all, or any of 40, 100, 200, 400 (also
        written ``"40"``, ``"40X"`` or ``"40x"``), alone or in a list.
    target : {"binary", "subtype"}, default="binary"
        ``"binary"``: 0 benign, 1 malignant. ``"subtype"``: 0-7 in the order of
        ``target_names`` (the four benign subtypes, then the four malignant ones),
        fixed whichever subtypes are present.
    load_images : bool, default=True
        Whether to decode the pixels. With ``False``, ``images`` is None and only the
        metadata and ``filenames`` are returned, for pipelines that read files lazily
        (the tiler accepts file paths); the whole data set is ~7.6 GB of pixels.
    image_size : tuple of int or None, default=(460, 700)
        ``(height, width)`` every image must have. ``None``: the size of the first file.
    on_size_mismatch : {"resize", "error"}, default="resize"
        What to do with an image of another size (a few BreakHis images are not
        700x460): resize it bilinearly to ``image_size`` (its path is listed in
        ``resized``) or raise a ``ValueError`` naming it.
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file whose name does not parse or that cannot be decoded
        (corrupt or truncated PNG): raise an error naming it, or skip it with a warning
        naming it (its path is listed in ``skipped``). A file is never kept with a guessed
        label.
    n_jobs : int or None, default=None
        Number of threads decoding images; ``None`` means 1 and -1 all cores.
    verbose : bool, default=True
        Whether to show a progress bar while decoding.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the fields

        images : ndarray of shape (n, H, W, 3), dtype uint8, or None
            RGB images; None if ``load_images=False``.
        target : ndarray of shape (n,), dtype int
            Labels, see ``target``.
        target_names : ndarray of str
            ``["benign", "malignant"]`` or the eight subtype names.
        subtype : ndarray of str
            Subtype folder name per image, e.g. ``"ductal_carcinoma"``.
        magnification : ndarray of str
            ``"40X"``, ``"100X"``, ``"200X"`` or ``"400X"``.
        patient : ndarray of str
            Slide id as BreakHis names its folder, e.g. ``"SOB_B_A_14-22549AB"``
            (BreakHis' 82 "patients"). Use it as ``groups`` for patient-wise splits.
        patient_number : ndarray of str
            The bare patient number, e.g. ``"22549"``: some numbers own several slides
            (22549AB, 22549CD, 22549G), so grouping by it is the stricter choice.
        filenames : ndarray of str
            Absolute paths.
        skipped : list of str
            Paths skipped under ``on_error="skip"``, sorted.
        skip_reasons : list of dict
            ``{"file": path, "reason": why}`` for each path of ``skipped``, in the same order
            (the name does not parse, the file is truncated, empty, not an image ...).
        resized : list of str
            Paths resized under ``on_size_mismatch="resize"``.
        DESCR : str
            Description with the counts and the citation.

    Raises
    ------
    PathNotFoundError
        (a ``FileNotFoundError``) If ``root`` does not exist, or no image is found (for the
        magnifications asked).
    UserError, DataError
        (both ``ValueError``) For invalid parameters (``UserError``), unparsable names or
        images of the wrong size (``DataError``), as above.
    UnreadableImageError
        If an image cannot be decoded and ``on_error="raise"``; it is both an ``OSError``
        and a ``ValueError``.

    See Also
    --------
    make_histology : Synthetic look-alike with known tile labels.

    Notes
    -----
    Split patient-wise, e.g. ``GroupKFold().split(X, y, groups=data.patient)``. Images of
    one slide are near-duplicates (the same tissue at several magnifications and
    positions), so a random split of images overestimates accuracy considerably.

    References
    ----------
    .. [1] F. A. Spanhol, L. S. Oliveira, C. Petitjean and L. Heutte, "A Dataset for
       Breast Cancer Histopathological Image Classification", IEEE Transactions on
       Biomedical Engineering, 63(7), 1455-1462, 2016.

    Examples
    --------
    >>> from skhybrid.datasets import load_breakhis
    >>> data = load_breakhis("BreaKHis_v1", magnification=200)  # doctest: +SKIP
    >>> data.images.shape  # doctest: +SKIP
    (2013, 460, 700, 3)
    """
    root = Path(root).expanduser()
    _check_option(target, "target", TARGETS)
    _check_option(on_size_mismatch, "on_size_mismatch", ("resize", "error"))
    _check_option(on_error, "on_error", ("raise", "skip"))
    magnifications = _normalise_magnifications(magnification)
    if not root.exists():
        raise PathNotFoundError(f"BreakHis root folder {os.fspath(root)!r} does not exist.")
    root = root.resolve()

    paths, names, skipped = _parse_all(_find_pngs(root), on_error)
    if magnifications is not None:
        chosen = [i for i, name in enumerate(names) if name.magnification in magnifications]
        paths, names = [paths[i] for i in chosen], [names[i] for i in chosen]
    _check_found(paths, root, magnifications)

    images, resized = None, []
    if load_images:
        size = _image_size_of(paths[0]) if image_size is None else _check_size(image_size)
        images, loaded, unreadable, resized = _load_pixels(
            paths, size, on_size_mismatch, on_error, n_jobs, verbose
        )
        if not loaded.all():
            images = _compact(images, loaded)
            paths = [p for p, ok in zip(paths, loaded) if ok]
            names = [n for n, ok in zip(names, loaded) if ok]
            skipped = {**skipped, **unreadable}
            _check_found(paths, root, magnifications)
    return _bunch(images, paths, names, target, skipped, resized)


def _check_option(value, name: str, allowed: Iterable[str]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {list(allowed)}, got {value!r}.")


def _check_size(image_size) -> tuple[int, int]:
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise UserError(f"image_size must be (height, width) or None, got {image_size!r}.")
    return int(size[0]), int(size[1])


def _check_found(paths: list[Path], root: Path, magnifications) -> None:
    if not paths:
        which = (
            "at any magnification"
            if magnifications is None
            else f"at magnification {', '.join(magnifications)}"
        )
        raise PathNotFoundError(
            f"No readable BreakHis images (SOB_*.png) found under {os.fspath(root)!r} {which}."
        )


def _bunch(
    images: np.ndarray | None,
    paths: list[Path],
    names: list[BreakHisName],
    target: str,
    skipped: dict[str, str],
    resized: list[str],
) -> Bunch:
    subtype = np.array([n.subtype for n in names])
    if target == "binary":
        target_names = np.array(["benign", "malignant"])
        labels = np.array([int(n.malignant) for n in names])
    else:
        target_names = np.array(list(BREAKHIS_SUBTYPES.values()))
        index = {name: i for i, name in enumerate(target_names)}
        labels = np.array([index[s] for s in subtype])
    data = Bunch(
        images=images,
        target=labels,
        target_names=target_names,
        subtype=subtype,
        magnification=np.array([n.magnification for n in names]),
        patient=np.array([n.patient for n in names]),
        patient_number=np.array([n.patient_number for n in names]),
        filenames=np.array([str(p) for p in paths]),
        skipped=sorted(skipped),
        skip_reasons=[{"file": f, "reason": skipped[f]} for f in sorted(skipped)],
        resized=resized,
    )
    data.DESCR = _describe(data, names)
    return data


def _describe(data: Bunch, names: list[BreakHisName]) -> str:
    n_malignant = sum(n.malignant for n in names)
    subtypes = Counter(data.subtype)
    magnifications = Counter(data.magnification)
    subtype_lines = "\n".join(
        f"    {name:<22}{subtypes[name]:>6}" for name in BREAKHIS_SUBTYPES.values()
    )
    magnification_lines = ", ".join(f"{m}: {magnifications[m]}" for m in _MAGNIFICATIONS)
    return f"""\
.. _breakhis_dataset:

BreakHis breast cancer histopathology images
--------------------------------------------

Images loaded: {len(names)} ({len(names) - n_malignant} benign, {n_malignant} malignant), \
RGB, 700x460 pixels originally
Slides ("patients" in BreakHis): {len(set(data.patient))}; \
patient numbers: {len(set(data.patient_number))}
Magnifications: {magnification_lines}
Subtypes:
{subtype_lines}
Skipped files: {len(data.skipped)}; resized images: {len(data.resized)}

Images of breast tumour tissue from surgical open biopsies (SOB), stained with
hematoxylin and eosin, collected at the P&D Laboratory, Brazil. The full data set has
7,909 images of 82 patients. Labels come from the file names.

Split patient-wise: images of one slide are near-duplicates, so a random split of
images leaks. Use ``GroupKFold`` (or ``StratifiedGroupKFold``) with
``groups=data.patient``; ``data.patient_number`` groups the slides that share a
patient number (e.g. 22549AB and 22549CD) and is the stricter choice.

Reference: F. A. Spanhol, L. S. Oliveira, C. Petitjean and L. Heutte, "A Dataset for
Breast Cancer Histopathological Image Classification", IEEE Transactions on Biomedical
Engineering, 63(7), 1455-1462, 2016.
"""
