"""Synthetic H&E-like histology images with known tile labels (``make_histology``).

The renderer works in optical-density space (Beer-Lambert law), as stained tissue does:
each pixel holds a hematoxylin and an eosin concentration, and its colour is the
illumination attenuated by ``exp(-(h * OD_H + e * OD_E))``. Nuclei and glands are
pre-rendered stamps that are summed into the concentration maps with ``np.bincount``, so
one image costs a handful of whole-array numpy operations and no per-pixel Python loop.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from PIL import Image
from scipy.ndimage import uniform_filter
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ..tiling import _check_pair, tile_boxes, tile_edges
from ._breakhis import _BENIGN_CODES, BREAKHIS_SUBTYPES, TARGETS

__all__ = ["make_histology", "tile_slices"]

# Field of view the default sizes refer to: one BreakHis image.
_REFERENCE_SIZE = (460, 700)

# Stain vectors (RGB optical density per unit concentration): Ruifrok & Johnston's eosin,
# and a hematoxylin shifted from their (0.650, 0.704, 0.286) towards the violet of
# BreakHis nuclei.
_OD_HEMATOXYLIN = np.array([0.580, 0.760, 0.290], dtype=np.float32)
_OD_EOSIN = np.array([0.093, 0.954, 0.283], dtype=np.float32)
# A slide's unstained background is not white under the BreakHis microscope: pale lilac.
_ILLUMINATION = np.array([242.0, 236.0, 245.0], dtype=np.float32)


@dataclass(frozen=True)
class _StampBank:
    """Pre-rendered stamps of one kind of object, all in a square window."""

    stamps: np.ndarray  # (k, win, win) float32
    half: int  # window half-width: a stamp centred on (y, x) covers y - half .. y + half

    @property
    def count(self) -> int:
        return self.stamps.shape[0]


@dataclass(frozen=True)
class _GlandBank:
    lumen: _StampBank
    # Offsets (dy, dx) of the nuclei lining each gland shape, relative to its centre.
    ring_offsets: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class _TissueModel:
    """Everything shared by all images of one ``make_histology`` call."""

    scale: float
    nucleus_radius: float  # of benign nuclei, in pixels
    tumour_spacing: float  # distance between neighbouring tumour cells, in pixels
    benign_nuclei: _StampBank
    stromal_nuclei: _StampBank
    malignant_nuclei: _StampBank
    glands: _GlandBank
    gland_cell: float  # side of the jittered grid cell holding at most one gland
    difficulty: float
    pad: int


def tile_slices(image_size: tuple[int, int], grid: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Pixel region of each tile, in row-major order, as a tiler cuts it.

    Tiles are ``H // rows`` by ``W // cols`` pixels; the remainder is trimmed evenly
    from both sides of the image (the extra pixel, if any, from the bottom/right): the
    geometry of :func:`skhybrid.tiling.tile_boxes` with ``remainder="crop"``.

    Parameters
    ----------
    image_size : tuple of int
        ``(H, W)`` of the image.
    grid : tuple of int
        ``(rows, cols)`` of the tile grid.

    Returns
    -------
    list of tuple of slice
        ``(row_slice, col_slice)`` for each of the ``rows * cols`` tiles.
    """
    return [
        (slice(top, bottom), slice(left, right))
        for top, left, bottom, right in tile_boxes(*image_size, grid).tolist()
    ]


def _tile_of_pixel(edges: np.ndarray, length: int) -> np.ndarray:
    """Tile row (or column) of every pixel row (or column) of an axis cut at ``edges``.

    The trimmed border pixels join the edge tile.
    """
    return np.clip(np.searchsorted(edges, np.arange(length), side="right") - 1, 0, len(edges) - 2)


# ----------------------------------------------------------------------------- stamps


def _smooth_step(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _blob_geometry(
    rng: np.random.Generator,
    count: int,
    half: int,
    radius: np.ndarray,
    elongation: np.ndarray,
    irregularity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius ``rho`` (1 on the boundary) of irregular ellipses in a window.

    Returns ``rho`` of shape (count, win, win) and the radius in pixels, for edge softness.
    """
    axis = np.arange(-half, half + 1, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    angle = rng.uniform(0, np.pi, count).astype(np.float32)[:, None, None]
    cos, sin = np.cos(angle), np.sin(angle)
    stretch = np.sqrt(elongation).astype(np.float32)[:, None, None]
    u = (xx * cos + yy * sin) / stretch
    v = (-xx * sin + yy * cos) * stretch
    phi = np.arctan2(v, u)
    # Low harmonics of the boundary radius give lobed, jagged outlines; higher ones would
    # alias at the small sizes the stamps are drawn at.
    boundary = np.ones_like(phi)
    for k in range(2, 6):
        amplitude = irregularity * rng.uniform(0, 1, count).astype(np.float32) / (k - 1)
        phase = rng.uniform(0, 2 * np.pi, count).astype(np.float32)
        boundary += amplitude[:, None, None] * np.cos(k * phi + phase[:, None, None])
    rho = np.hypot(u, v) / (radius.astype(np.float32)[:, None, None] * boundary)
    return rho, radius


def _nucleus_stamps(
    rng: np.random.Generator,
    count: int,
    *,
    radius_mean: float,
    radius_sd: float,
    elongation: tuple[float, float],
    irregularity: float,
    darkness: float,
    darkness_sd: float,
    chromatin: float,
    nucleolus_prob: float = 0.0,
) -> _StampBank:
    """Hematoxylin concentration of ``count`` nuclei with a membrane rim and chromatin."""
    radius = np.clip(
        rng.normal(radius_mean, radius_sd, count), 0.6 * radius_mean, 1.6 * radius_mean
    )
    radius = np.maximum(radius, 0.8)
    stretch = rng.uniform(*elongation, count)
    half = int(np.ceil(radius.max() * np.sqrt(stretch.max()) * (1 + irregularity) + 1.5))
    rho, radius = _blob_geometry(rng, count, half, radius, stretch, irregularity)
    soft = np.clip(1.0 / radius, 0.08, 0.6).astype(np.float32)[:, None, None]
    body = _smooth_step((1.0 - rho) / soft + 0.5)
    rim = np.exp(-(((rho - 0.85) / 0.18) ** 2))
    speckle = rng.normal(0.0, 1.0, rho.shape).astype(np.float32)
    level = rng.normal(darkness, darkness_sd, count).clip(0.3 * darkness, None)
    stamps = body * (0.6 + 0.5 * rim + chromatin * speckle)
    if nucleolus_prob > 0:
        stamps += _nucleoli(rng, rho.shape, half, radius, nucleolus_prob) * body
    stamps *= level.astype(np.float32)[:, None, None]
    return _cropped(np.clip(stamps, 0, None).astype(np.float32), half)


def _cropped(stamps: np.ndarray, half: int) -> _StampBank:
    """Bank with the window trimmed to where any stamp is visible: splatting cost is its area."""
    visible = (stamps > 0.01).any(axis=0)
    rows, cols = np.nonzero(visible)
    reach = int(max(np.abs(rows - half).max(), np.abs(cols - half).max())) if len(rows) else 0
    window = slice(half - reach, half + reach + 1)
    return _StampBank(np.ascontiguousarray(stamps[:, window, window]), reach)


def _nucleoli(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    half: int,
    radius: np.ndarray,
    probability: float,
) -> np.ndarray:
    count = shape[0]
    axis = np.arange(-half, half + 1, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    offset = rng.uniform(-0.35, 0.35, (2, count)) * radius
    spot_r = np.maximum(0.18 * radius, 0.7)
    dist2 = (yy - offset[0][:, None, None]) ** 2 + (xx - offset[1][:, None, None]) ** 2
    spots = np.exp(-dist2 / (2 * spot_r[:, None, None] ** 2))
    present = rng.random(count) < probability
    return (0.6 * spots * present[:, None, None]).astype(np.float32)


def _gland_bank(
    rng: np.random.Generator,
    count: int,
    scale: float,
    nucleus_radius: float,
    *,
    radius: tuple[float, float] = (12, 30),
    stretch: tuple[float, float] = (1.0, 2.2),
    irregularity: float = 0.12,
) -> _GlandBank:
    """Lumen masks of irregular glands and the positions of the nuclei lining them.

    ``radius`` (in pixels of a full-size image) and ``stretch`` (axis ratio) are the ranges
    the glands are drawn from; the defaults are the glands of benign tissue.
    """
    lumen_radius = rng.uniform(*radius, count) * scale
    stretch = rng.uniform(*stretch, count)
    half = int(np.ceil(lumen_radius.max() * np.sqrt(stretch.max()) * 1.2 + 3))
    rho, _ = _blob_geometry(rng, count, half, lumen_radius, stretch, irregularity)
    soft = np.clip(1.5 / lumen_radius, 0.05, 0.5)[:, None, None].astype(np.float32)
    lumen = _smooth_step((1.0 - rho) / soft + 0.5)
    # The lining nuclei sit just outside the lumen; rho is relative to the lumen radius.
    ring_level = 1.0 + 1.3 * nucleus_radius / lumen_radius
    ring_offsets = tuple(
        _ring_positions(rho[k], half, ring_level[k], nucleus_radius) for k in range(count)
    )
    return _GlandBank(_StampBank(lumen.astype(np.float32), half), ring_offsets)


def _ring_positions(rho: np.ndarray, half: int, level: float, nucleus_radius: float) -> np.ndarray:
    """Evenly spaced points on the contour ``rho == level`` of one gland stamp."""
    axis = np.arange(-half, half + 1)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    band = np.abs(rho - level)
    on_contour = band <= max(1.0 / half + 0.03, float(band.min()))
    ys, xs = yy[on_contour], xx[on_contour]
    order = np.argsort(np.arctan2(ys, xs))
    ys, xs = ys[order], xs[order]
    # Contour pixels are spread evenly along it, so every k-th one is evenly spaced in arc.
    perimeter = 2 * np.pi * np.sqrt(np.mean(ys**2 + xs**2))
    n_nuclei = max(int(perimeter / (2.3 * nucleus_radius)), 4)
    pick = np.linspace(0, len(ys), n_nuclei, endpoint=False).astype(int)
    return np.stack([ys[pick], xs[pick]], axis=1).astype(np.float32)


def _build_tissue_model(
    rng: np.random.Generator, image_size: tuple[int, int], difficulty: float
) -> _TissueModel:
    height, width = image_size
    scale = float(np.sqrt(height * width / (_REFERENCE_SIZE[0] * _REFERENCE_SIZE[1])))
    # Difficulty moves the malignant nuclei's look towards the benign one.
    contrast = 1.0 - 0.75 * difficulty
    r_benign = max(4.5 * scale, 0.9)
    r_malignant = max((4.5 + 3.0 * contrast) * scale, 0.9)
    benign = _nucleus_stamps(
        rng, 48, radius_mean=r_benign, radius_sd=0.07 * r_benign, elongation=(1.0, 1.3),
        irregularity=0.03, darkness=0.85, darkness_sd=0.06, chromatin=0.08,
    )  # fmt: skip
    stromal = _nucleus_stamps(
        rng, 32, radius_mean=0.75 * r_benign, radius_sd=0.1 * r_benign, elongation=(3.0, 5.0),
        irregularity=0.05, darkness=0.95, darkness_sd=0.1, chromatin=0.05,
    )  # fmt: skip
    malignant = _nucleus_stamps(
        rng, 96, radius_mean=r_malignant, radius_sd=(0.08 + 0.2 * contrast) * r_malignant,
        elongation=(1.0, 1.0 + 0.8 * contrast), irregularity=0.04 + 0.14 * contrast,
        darkness=0.85 + 0.35 * contrast, darkness_sd=0.06 + 0.1 * contrast,
        chromatin=0.08 + 0.1 * contrast, nucleolus_prob=0.5 * contrast,
    )  # fmt: skip
    glands = _gland_bank(rng, 24, scale, r_benign)
    pad = max(benign.half, stromal.half, malignant.half, glands.lumen.half) + 2
    return _TissueModel(
        scale=scale,
        nucleus_radius=r_benign,
        tumour_spacing=2.0 * r_malignant,
        benign_nuclei=benign,
        stromal_nuclei=stromal,
        malignant_nuclei=malignant,
        glands=glands,
        gland_cell=max(125.0 * scale, 1.8 * glands.lumen.half),
        difficulty=difficulty,
        pad=pad,
    )


# ----------------------------------------------------------------------------- rendering


class _Canvas:
    """A padded concentration map that stamps are summed into."""

    def __init__(self, image_size: tuple[int, int], pad: int) -> None:
        self.height, self.width = image_size
        self.pad = pad
        self.padded_width = self.width + 2 * pad
        self.size = (self.height + 2 * pad) * self.padded_width
        self._index: list[np.ndarray] = []
        self._weight: list[np.ndarray] = []

    def add(
        self, bank: _StampBank, ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Queue random stamps of ``bank`` centred on ``(ys, xs)``; returns the stamp ids."""
        which = rng.integers(0, bank.count, len(ys))
        ys, xs = np.rint(ys).astype(np.int64), np.rint(xs).astype(np.int64)
        # Centres farther out than the padding would wrap around; they are invisible anyway.
        reach = self.pad - bank.half
        inside = (ys >= -reach) & (ys < self.height + reach)
        inside &= (xs >= -reach) & (xs < self.width + reach)
        axis = np.arange(-bank.half, bank.half + 1)
        offsets = (axis[:, None] * self.padded_width + axis[None, :]).ravel()
        centres = (ys[inside] + self.pad) * self.padded_width + (xs[inside] + self.pad)
        self._index.append((centres[:, None] + offsets[None, :]).ravel())
        self._weight.append(bank.stamps[which[inside]].ravel())
        return which

    def render(self) -> np.ndarray:
        """Sum of all queued stamps as an (H, W) float32 map; empties the queue."""
        if self._index:
            index, weight = np.concatenate(self._index), np.concatenate(self._weight)
            flat = np.bincount(index, weight, minlength=self.size)
        else:
            flat = np.zeros(self.size)
        self._index, self._weight = [], []
        padded = flat.reshape(-1, self.padded_width)
        inner = padded[self.pad : self.pad + self.height, self.pad : self.pad + self.width]
        return inner.astype(np.float32)


def _coarse_noise(rng: np.random.Generator, image_size: tuple[int, int], cell: float) -> np.ndarray:
    """Standard normal values on a grid ``cell`` pixels apart covering the image."""
    height, width = image_size
    shape = (int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2)
    return rng.standard_normal(shape, dtype=np.float32)


def _upsample(coarse: np.ndarray, image_size: tuple[int, int], cell: float) -> np.ndarray:
    """Bilinear upsampling of ``_coarse_noise`` to the full image (features ~cell wide)."""
    height, width = image_size
    box = (0.5, 0.5, 0.5 + width / cell, 0.5 + height / cell)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR, box=box)
    return np.asarray(image)


def _noise_at(coarse: np.ndarray, cell: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear value of ``_coarse_noise`` at points, consistent with ``_upsample``."""
    gy = np.clip(ys / cell + 0.5, 0, coarse.shape[0] - 1.001)
    gx = np.clip(xs / cell + 0.5, 0, coarse.shape[1] - 1.001)
    y0, x0 = gy.astype(int), gx.astype(int)
    fy, fx = gy - y0, gx - x0
    top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
    bottom = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _sample_tile_properties(
    rng: np.random.Generator, tile_labels: np.ndarray, difficulty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile malignancy (share of the tumour pattern) and nuclear density factor.

    Difficulty pulls the two tissue types' malignancy distributions together and widens
    them, so tiles near the middle look like either class.
    """
    n = len(tile_labels)
    benign_m = np.abs(rng.normal(0.0, 0.03 + 0.3 * difficulty, n))
    malignant_m = rng.normal(1.0 - 0.75 * difficulty, 0.06 + 0.22 * difficulty, n)
    malignancy = np.clip(np.where(tile_labels == 1, malignant_m, benign_m), 0.0, 1.0)
    density = np.clip(rng.normal(1.0, 0.12, n), 0.6, 1.4)
    return malignancy, density


def _jittered_grid(
    rng: np.random.Generator, image_size: tuple[int, int], spacing: float, jitter: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points on a square grid ``spacing`` apart, each moved by up to ``jitter * spacing``.

    Cells packed this way touch without piling up, as in a sheet of tissue.
    """
    height, width = image_size
    rows, cols = int(np.ceil(height / spacing)) + 2, int(np.ceil(width / spacing)) + 2
    gy, gx = np.meshgrid(np.arange(rows) - 0.5, np.arange(cols) - 0.5, indexing="ij")
    ys = gy.ravel() * spacing + rng.uniform(-jitter, jitter, gy.size) * spacing
    xs = gx.ravel() * spacing + rng.uniform(-jitter, jitter, gx.size) * spacing
    return ys, xs


def _uniform_points(
    rng: np.random.Generator, rate: float, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    height, width = image_size
    count = rng.poisson(rate * height * width)
    return rng.uniform(0, height, count), rng.uniform(0, width, count)


def _tile_value(
    values: np.ndarray, ys: np.ndarray, xs: np.ndarray, tile_of: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per-tile ``values`` looked up at the tile each point falls in."""
    row_of, col_of = tile_of
    iy = row_of[np.clip(ys.astype(int), 0, len(row_of) - 1)]
    ix = col_of[np.clip(xs.astype(int), 0, len(col_of) - 1)]
    # The last pixel column always belongs to the last tile column.
    return values[iy * (col_of[-1] + 1) + ix]


def _render_image(
    seed: int,
    model: _TissueModel,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    tile_labels: np.ndarray,
    stain: dict[str, np.ndarray],
) -> np.ndarray:
    """Render one uint8 RGB image whose tiles show the tissue types in ``tile_labels``."""
    rng = np.random.default_rng(seed)
    s = model.scale
    row_edges, col_edges = tile_edges(*image_size, grid)
    tile_of = (_tile_of_pixel(row_edges, image_size[0]), _tile_of_pixel(col_edges, image_size[1]))
    malignancy, density = _sample_tile_properties(rng, tile_labels, model.difficulty)
    canvas = _Canvas(image_size, model.pad)

    # Glands where the tissue is benign: a pale lumen lined by small regular nuclei.
    gy, gx = _jittered_grid(rng, image_size, model.gland_cell, 0.22)
    keep = rng.random(len(gy)) < 0.8 * (1.0 - _tile_value(malignancy, gy, gx, tile_of))
    gy, gx = gy[keep], gx[keep]
    shape = canvas.add(model.glands.lumen, gy, gx, rng)
    lumen = np.clip(canvas.render(), 0.0, 1.0)
    lining = [model.glands.ring_offsets[k] + (y, x) for k, y, x in zip(shape, gy, gx)]
    lining = np.concatenate(lining) if lining else np.empty((0, 2), np.float32)
    lining = lining + rng.normal(0, 0.3 * model.nucleus_radius, lining.shape)
    canvas.add(model.benign_nuclei, lining[:, 0], lining[:, 1], rng)

    # Fibroblasts scattered in the stroma everywhere.
    sy, sx = _uniform_points(rng, 2.5e-4 / s**2, image_size)
    canvas.add(model.stromal_nuclei, sy, sx, rng)

    # Tumour cells: sheets and nests (where smooth noise is high) of packed cells.
    ty, tx = _jittered_grid(rng, image_size, model.tumour_spacing, 0.3)
    nest_cell = 60.0 * s
    nests = _noise_at(_coarse_noise(rng, image_size, nest_cell), nest_cell, ty, tx)
    tile_m = _tile_value(malignancy * density, ty, tx, tile_of)
    keep = rng.random(len(ty)) < np.minimum(1.3 * tile_m, 1.0) * _smooth_step(1.0 + 0.8 * nests)
    canvas.add(model.malignant_nuclei, ty[keep], tx[keep], rng)

    nuclei = np.minimum(canvas.render(), 1.6)
    if s > 0.6:
        # A microscope is never perfectly sharp; at small sizes resampling blurs enough.
        nuclei = uniform_filter(nuclei, 3)
    # Cytoplasm surrounds every nucleus; blurring the nuclei spreads it into a cell body.
    cytoplasm = uniform_filter(nuclei, max(int(2.4 * model.nucleus_radius) | 1, 3))
    # Lumens are not empty glass: faint secretions keep them a pale pink.
    stroma = _stroma(rng, model, image_size) * (1.0 - 0.7 * lumen)
    eosin = stroma * (1.0 - 0.45 * np.minimum(nuclei, 1.0)) + 0.35 * cytoplasm
    hematoxylin = 1.05 * nuclei + 0.25 * cytoplasm + 0.10 * (1.0 - 0.6 * lumen)
    return _to_rgb(rng, hematoxylin, eosin, stain)


def _stroma(
    rng: np.random.Generator, model: _TissueModel, image_size: tuple[int, int]
) -> np.ndarray:
    """Eosin concentration of collagen: wavy fibre bundles over patchy staining."""
    s = model.scale
    fibre_cell, patch_cell = 7.0 * s, 80.0 * s
    # Fibres: noise stretched along a random direction, drawn by resizing an anisotropic grid.
    angle = rng.uniform(0, 180)
    fibres = _fibres(rng, image_size, fibre_cell, angle)
    patches = _upsample(_coarse_noise(rng, image_size, patch_cell), image_size, patch_cell)
    stroma = 0.27 + 0.05 * patches + 0.04 * fibres
    # Clear spaces (tears, oedema) wherever the patch noise is highest.
    return np.maximum(stroma, 0.04) * (1.0 - 0.85 * _smooth_step(1.6 * (patches - 1.4)))


def _fibres(
    rng: np.random.Generator, image_size: tuple[int, int], cell: float, angle: float
) -> np.ndarray:
    """Noise stretched along ``angle`` (degrees): streaks like collagen fibres.

    Drawn at half resolution (fibres are several pixels wide) and then upsampled, which
    halves the cost of the slow affine resampling twice over.
    """
    full_size = image_size
    height, width = (image_size[0] + 1) // 2, (image_size[1] + 1) // 2
    cell = cell / 2
    side = np.hypot(height, width)
    stretch = 5.0
    coarse = rng.standard_normal(
        (int(side / cell) + 3, int(side / (stretch * cell)) + 3), dtype=np.float32
    )
    # One affine resampling maps each output pixel to the rotated, stretched coarse grid.
    theta = np.deg2rad(angle)
    cos, sin = np.cos(theta), np.sin(theta)
    a, b = cos / (stretch * cell), sin / (stretch * cell)
    d, e = -sin / cell, cos / cell
    centre = ((coarse.shape[1] - 1) / 2, (coarse.shape[0] - 1) / 2)
    c = centre[0] - a * width / 2 - b * height / 2
    f = centre[1] - d * width / 2 - e * height / 2
    image = Image.fromarray(coarse, mode="F").transform(
        (width, height), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR
    )
    image = image.resize(full_size[::-1], Image.BILINEAR)
    return np.asarray(image)


def _to_rgb(
    rng: np.random.Generator,
    hematoxylin: np.ndarray,
    eosin: np.ndarray,
    stain: dict[str, np.ndarray],
) -> np.ndarray:
    """Beer-Lambert: light through the stains, plus a little camera noise."""
    h_od = stain["h_vector"] * stain["h_scale"]
    e_od = stain["e_vector"] * stain["e_scale"]
    grain = rng.standard_normal(hematoxylin.shape, dtype=np.float32)
    grain *= np.float32(2.0)
    grain += np.float32(0.5)  # rounds when cast to uint8
    rgb = np.empty((*hematoxylin.shape, 3), dtype=np.uint8)
    value = np.empty_like(hematoxylin)
    for channel in range(3):
        np.multiply(hematoxylin, -h_od[channel], out=value)
        value -= eosin * e_od[channel]
        np.exp(value, out=value)
        value *= stain["illumination"][channel]
        value += grain
        np.clip(value, 0, 255, out=value)
        rgb[..., channel] = value
    return rgb


def _stain(rng: np.random.RandomState, variation: float) -> dict[str, np.ndarray]:
    """A slide's staining: stain hues, intensities and illumination, jittered."""

    def unit(vector: np.ndarray) -> np.ndarray:
        jittered = np.abs(vector + rng.normal(0, 0.6 * variation, 3))
        return (jittered / np.linalg.norm(jittered)).astype(np.float32)

    illumination = _ILLUMINATION + rng.normal(0, 60 * variation, 3)
    return {
        "h_vector": unit(_OD_HEMATOXYLIN),
        "e_vector": unit(_OD_EOSIN),
        "h_scale": np.float32(np.exp(rng.normal(0, 1.5 * variation))),
        "e_scale": np.float32(np.exp(rng.normal(0, 2.0 * variation))),
        "illumination": np.clip(illumination, 150, 255).astype(np.float32),
    }


def _perturb_stain(
    rng: np.random.RandomState, stain: dict[str, np.ndarray], variation: float
) -> dict[str, np.ndarray]:
    """An image's staining: its slide's, plus a smaller image-to-image wobble."""
    image = _stain(rng, 0.3 * variation)
    return {
        "h_vector": stain["h_vector"],
        "e_vector": stain["e_vector"],
        "h_scale": stain["h_scale"] * image["h_scale"],
        "e_scale": stain["e_scale"] * image["e_scale"],
        "illumination": np.clip(
            stain["illumination"] + image["illumination"] - _ILLUMINATION, 150, 255
        ).astype(np.float32),
    }


# ----------------------------------------------------------------------------- lab stain

# The staining of a second laboratory ("lab B"), reached at ``stain_shift=1``: a bluer
# hematoxylin (more red absorbed, as in Ruifrok & Johnston's vector and beyond), an
# orange-red eosin (more blue absorbed), nuclei stained harder and stroma paler, seen
# under a warm, yellowish lamp. Stain vectors and scales act in optical density, the space
# in which stains mix (Beer-Lambert); the lamp tints the illumination. Each is applied as a
# change to an image's own stain, so it shifts every image the same way whatever its jitter.
_LAB_B_HEMATOXYLIN = np.array([0.740, 0.620, 0.260], dtype=np.float32)
_LAB_B_EOSIN = np.array([0.050, 0.860, 0.500], dtype=np.float32)
_LAB_B_H_SCALE = 1.35
_LAB_B_E_SCALE = 0.65
_LAB_B_ILLUMINATION = np.array([250.0, 236.0, 212.0], dtype=np.float32)


def _shift_stain(stain: dict[str, np.ndarray], strength: float) -> dict[str, np.ndarray]:
    """An image's staining moved ``strength`` of the way from lab A's towards lab B's.

    Deterministic (it draws no random numbers), so the same seed gives the same tissue in
    both labs and only the staining differs.
    """

    def towards(vector: np.ndarray, lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
        moved = np.abs(vector + strength * (lab_b / np.linalg.norm(lab_b) - lab_a))
        return (moved / np.linalg.norm(moved)).astype(np.float32)

    illumination = stain["illumination"] + strength * (_LAB_B_ILLUMINATION - _ILLUMINATION)
    return {
        "h_vector": towards(stain["h_vector"], _OD_HEMATOXYLIN, _LAB_B_HEMATOXYLIN),
        "e_vector": towards(stain["e_vector"], _OD_EOSIN, _LAB_B_EOSIN),
        "h_scale": np.float32(stain["h_scale"] * _LAB_B_H_SCALE**strength),
        "e_scale": np.float32(stain["e_scale"] * _LAB_B_E_SCALE**strength),
        "illumination": np.clip(illumination, 150, 255).astype(np.float32),
    }


# ----------------------------------------------------------------------------- subtypes

#: The subtype names in the order of ``target="subtype"``: that of ``load_breakhis``.
_SUBTYPE_NAMES = tuple(BREAKHIS_SUBTYPES.values())
_N_BENIGN_SUBTYPES = sum(code in _BENIGN_CODES for code in BREAKHIS_SUBTYPES)


@dataclass(frozen=True)
class _SubtypeModel:
    """The extra stamps the eight subtype patterns draw, shared by one call's images."""

    small_glands: _GlandBank  # adenosis: many small glands
    slit_glands: _GlandBank  # fibroadenoma: compressed, elongated glands
    tubules: _GlandBank  # tubular adenoma: small round tubules
    lobular_nuclei: _StampBank  # small, round, uniform cells
    columnar_nuclei: _StampBank  # papillary: tall, dark, crowded cells
    pad: int


def _build_subtype_model(rng: np.random.Generator, model: _TissueModel) -> _SubtypeModel:
    s, r = model.scale, model.nucleus_radius
    small = _gland_bank(rng, 16, s, r, radius=(6, 11), stretch=(1.0, 1.6))
    slits = _gland_bank(rng, 16, s, r, radius=(9, 15), stretch=(4.0, 7.0), irregularity=0.05)
    tubules = _gland_bank(rng, 16, s, r, radius=(4, 6), stretch=(1.0, 1.2), irregularity=0.04)
    lobular = _nucleus_stamps(
        rng, 32, radius_mean=1.05 * r, radius_sd=0.05 * r, elongation=(1.0, 1.15),
        irregularity=0.03, darkness=1.1, darkness_sd=0.05, chromatin=0.05,
    )  # fmt: skip
    columnar = _nucleus_stamps(
        rng, 32, radius_mean=1.1 * r, radius_sd=0.1 * r, elongation=(1.8, 2.6),
        irregularity=0.06, darkness=1.15, darkness_sd=0.08, chromatin=0.1,
    )  # fmt: skip
    halves = (small.lumen.half, slits.lumen.half, tubules.lumen.half, lobular.half, columnar.half)
    return _SubtypeModel(small, slits, tubules, lobular, columnar, max(model.pad, *halves) + 2)


def _glands(
    rng: np.random.Generator,
    model: _TissueModel,
    sub: _SubtypeModel,
    image_size: tuple[int, int],
    bank: _GlandBank,
    spacing: float,
    jitter: float,
    keep: float,
    nuclei: _Canvas,
) -> np.ndarray:
    """Lumen map of glands on a jittered grid; their lining nuclei are queued in ``nuclei``."""
    gy, gx = _jittered_grid(rng, image_size, spacing, jitter)
    chosen = rng.random(len(gy)) < keep
    gy, gx = gy[chosen], gx[chosen]
    lumens = _Canvas(image_size, sub.pad)
    shape = lumens.add(bank.lumen, gy, gx, rng)
    lining = [bank.ring_offsets[k] + (y, x) for k, y, x in zip(shape, gy, gx)]
    lining = np.concatenate(lining) if lining else np.empty((0, 2), np.float32)
    lining = lining + rng.normal(0, 0.25 * model.nucleus_radius, lining.shape)
    nuclei.add(model.benign_nuclei, lining[:, 0], lining[:, 1], rng)
    return np.clip(lumens.render(), 0.0, 1.0)


def _fibroblasts(
    rng: np.random.Generator, model: _TissueModel, image_size: tuple[int, int], rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stromal nuclei scattered at ``rate`` times the density of plain stroma."""
    return _uniform_points(rng, rate * 2.5e-4 / model.scale**2, image_size)


def _streaks(rng: np.random.Generator, image_size: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise stretched along a random direction, scaled to unit standard deviation."""
    streaks = _fibres(rng, image_size, cell, rng.uniform(0, 180))
    return streaks / max(float(streaks.std()), 1e-6)


def _at(values: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``values`` at the pixels nearest to the points (clipped to the image)."""
    iy = np.clip(np.rint(ys).astype(int), 0, values.shape[0] - 1)
    ix = np.clip(np.rint(xs).astype(int), 0, values.shape[1] - 1)
    return values[iy, ix]


def _subtype_layer(
    rng: np.random.Generator,
    model: _TissueModel,
    sub: _SubtypeModel,
    image_size: tuple[int, int],
    code: int,
    collagen: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and eosin maps of a whole image of subtype ``code``.

    ``collagen`` is the image's stroma (``_stroma``), shared by all its subtypes.

    The pattern of each subtype, drawn with the primitives of the binary renderer (lengths
    in pixels of a full-size image, times ``scale``):

    0 adenosis: many small round glands, closely spaced, in normal stroma.
    1 fibroadenoma: abundant, strongly eosinophilic stroma with few nuclei and a few
      compressed, slit-like elongated glands.
    2 phyllodes_tumor: dense cellular stroma (six times the fibroblasts) cut by long,
      curved, leaf-like clefts lined by epithelium.
    3 tubular_adenoma: tightly packed small round tubules with little stroma between.
    4 ductal_carcinoma: irregular nests and cords of large pleomorphic nuclei.
    5 lobular_carcinoma: single-file lines of small, uniform, discohesive cells.
    6 mucinous_carcinoma: pale blue-grey mucin pools with small floating cell clusters.
    7 papillary_carcinoma: finger-like fronds, a fibrovascular (eosin) core lined by tall
      crowded dark cells, separated by clear spaces.
    """
    s, r = model.scale, model.nucleus_radius
    nuclei = _Canvas(image_size, sub.pad)
    lumen = np.zeros(image_size, dtype=np.float32)
    mucin = lumen
    stroma_gain, fibroblast_rate = 1.0, 1.0
    if code == 0:
        lumen = _glands(rng, model, sub, image_size, sub.small_glands, 38 * s, 0.25, 0.85, nuclei)
    elif code == 1:
        lumen = _glands(rng, model, sub, image_size, sub.slit_glands, 120 * s, 0.25, 0.6, nuclei)
        stroma_gain, fibroblast_rate = 1.35, 0.6
    elif code == 2:
        streaks = _streaks(rng, image_size, 45 * s)
        lumen = _smooth_step(1.0 - np.abs(streaks) / 0.25).astype(np.float32)
        # Epithelium lines both sides of each cleft.
        ey, ex = _jittered_grid(rng, image_size, 2.3 * r, 0.2)
        edge = np.abs(_at(streaks, ey, ex))
        chosen = (edge > 0.25) & (edge < 0.4) & (rng.random(len(ey)) < 0.8)
        nuclei.add(model.benign_nuclei, ey[chosen], ex[chosen], rng)
        stroma_gain, fibroblast_rate = 1.1, 6.0
    elif code == 3:
        lumen = _glands(rng, model, sub, image_size, sub.tubules, 26 * s, 0.08, 0.97, nuclei)
        stroma_gain, fibroblast_rate = 0.75, 0.3
    elif code == 4:
        ty, tx = _jittered_grid(rng, image_size, model.tumour_spacing, 0.3)
        cell = 45.0 * s
        nests = _noise_at(_coarse_noise(rng, image_size, cell), cell, ty, tx)
        chosen = rng.random(len(ty)) < _smooth_step(0.6 + 1.2 * nests)
        nuclei.add(model.malignant_nuclei, ty[chosen], tx[chosen], rng)
    elif code == 5:
        ly, lx = _single_files(rng, image_size, r)
        nuclei.add(sub.lobular_nuclei, ly, lx, rng)
        stroma_gain = 1.1
    elif code == 6:
        cell = 70.0 * s
        pools = _upsample(_coarse_noise(rng, image_size, cell), image_size, cell)
        mucin = _smooth_step(1.5 * (pools + 0.5)).astype(np.float32)
        ty, tx = _jittered_grid(rng, image_size, model.tumour_spacing, 0.3)
        cell = 18.0 * s
        clusters = _noise_at(_coarse_noise(rng, image_size, cell), cell, ty, tx)
        chosen = (clusters > 1.0) & (_at(mucin, ty, tx) > 0.5)
        nuclei.add(model.malignant_nuclei, ty[chosen], tx[chosen], rng)
        fibroblast_rate = 0.5
    else:
        fronds = _streaks(rng, image_size, 28 * s)
        lumen = _smooth_step((-0.3 - fronds) / 0.3).astype(np.float32)
        # Crowded tall cells line each frond, between its core and the clear space.
        ey, ex = _jittered_grid(rng, image_size, 1.6 * r, 0.15)
        level = _at(fronds, ey, ex)
        chosen = (level > -0.3) & (level < 0.15)
        nuclei.add(sub.columnar_nuclei, ey[chosen], ex[chosen], rng)
        fibroblast_rate = 0.5
    fy, fx = _fibroblasts(rng, model, image_size, fibroblast_rate)
    nuclei.add(model.stromal_nuclei, fy, fx, rng)
    return _compose(model, nuclei.render(), collagen, lumen, mucin, stroma_gain)


def _single_files(
    rng: np.random.Generator, image_size: tuple[int, int], nucleus_radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of cells in wavy, roughly parallel single-file lines covering the image."""
    height, width = image_size
    reach = np.hypot(height, width) / 2 + 4 * nucleus_radius
    along = np.arange(-reach, reach, 2.4 * nucleus_radius)
    across = np.arange(-reach, reach, 5.5 * nucleus_radius)
    u, v = np.meshgrid(along, across)
    phase = rng.uniform(0, 2 * np.pi, (len(across), 1))
    v = v + 1.5 * nucleus_radius * np.sin(u / (12 * nucleus_radius) + phase)
    # Discohesive: gaps within a file, and some files missing.
    chosen = (rng.random(u.shape) < 0.75) & (rng.random((len(across), 1)) < 0.7)
    u, v = u[chosen], v[chosen]
    theta = rng.uniform(0, np.pi)
    ys = height / 2 + u * np.sin(theta) + v * np.cos(theta)
    xs = width / 2 + u * np.cos(theta) - v * np.sin(theta)
    return ys, xs


def _compose(
    model: _TissueModel,
    nuclei: np.ndarray,
    collagen: np.ndarray,
    lumen: np.ndarray,
    mucin: np.ndarray,
    stroma_gain: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Stain concentrations from the nuclei, lumen and mucin maps, as ``_render_image`` does."""
    nuclei = np.minimum(nuclei, 1.6)
    if model.scale > 0.6:
        nuclei = uniform_filter(nuclei, 3)
    cytoplasm = uniform_filter(nuclei, max(int(2.4 * model.nucleus_radius) | 1, 3))
    stroma = stroma_gain * collagen * (1.0 - 0.7 * lumen)
    # Mucin is faintly basophilic: it takes a little hematoxylin and hardly any eosin,
    # the pale blue-grey of mucin pools.
    stroma *= 1.0 - 0.85 * mucin
    eosin = stroma * (1.0 - 0.45 * np.minimum(nuclei, 1.0)) + 0.35 * cytoplasm + 0.03 * mucin
    background = 0.10 * (1.0 - 0.6 * lumen) * (1.0 - mucin) + 0.24 * mucin
    hematoxylin = 1.05 * nuclei + 0.25 * cytoplasm + background
    return hematoxylin.astype(np.float32), eosin.astype(np.float32)


def _render_subtype_image(
    seed: int,
    model: _TissueModel,
    sub: _SubtypeModel,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    tile_codes: np.ndarray,
    stain: dict[str, np.ndarray],
) -> np.ndarray:
    """Render one uint8 RGB image whose tiles show the subtypes in ``tile_codes``.

    Each subtype present is drawn over the whole image (its own random stream, so a tile's
    tissue does not depend on its neighbours' subtypes) and each tile shows its own. The
    collagen under them is one for the whole image, so that only the subtypes' own
    structures, not the fibres, stop at tile borders.
    """
    rng = np.random.default_rng(seed)
    collagen = _stroma(rng, model, image_size)
    row_edges, col_edges = tile_edges(*image_size, grid)
    row_of = _tile_of_pixel(row_edges, image_size[0])
    col_of = _tile_of_pixel(col_edges, image_size[1])
    code_map = tile_codes[row_of[:, None] * grid[1] + col_of[None, :]]
    hematoxylin = np.zeros(image_size, dtype=np.float32)
    eosin = np.zeros(image_size, dtype=np.float32)
    for code in np.unique(tile_codes):
        layer_rng = np.random.default_rng([seed, int(code)])
        layer_h, layer_e = _subtype_layer(layer_rng, model, sub, image_size, int(code), collagen)
        where = code_map == code
        hematoxylin[where], eosin[where] = layer_h[where], layer_e[where]
    return _to_rgb(rng, hematoxylin, eosin, stain)


def _assign_subtypes(
    rng: np.random.Generator, patient: np.ndarray, target: np.ndarray, n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Subtype code of each patient's tumour and of its benign tissue, per patient.

    A patient has one subtype (one slide, one tumour, as in BreakHis). The subtypes of a
    class are dealt out in turn in a random order, so every subtype of a class is present
    as soon as the class has four patients. A malignant patient's benign tiles show one
    benign subtype of its own; a benign patient's are its subtype.
    """
    patient_class = np.zeros(n_patients, dtype=int)
    patient_class[patient] = target
    code = np.empty(n_patients, dtype=int)
    benign_code = np.empty(n_patients, dtype=int)
    benign, malignant = np.flatnonzero(patient_class == 0), np.flatnonzero(patient_class == 1)
    k = _N_BENIGN_SUBTYPES
    code[benign] = rng.permutation(np.resize(np.arange(k), len(benign)))
    code[malignant] = k + rng.permutation(
        np.resize(np.arange(len(_SUBTYPE_NAMES) - k), len(malignant))
    )
    benign_code[benign] = code[benign]
    benign_code[malignant] = rng.integers(0, k, len(malignant))
    return code, benign_code


# ----------------------------------------------------------------------------- labels


def _allocate_patients(
    rng: np.random.RandomState, n_benign: int, n_malignant: int, n_patients: int
) -> tuple[np.ndarray, np.ndarray]:
    """Patient number and class of each image; every patient has images of one class only."""
    n_images = n_benign + n_malignant
    share = n_malignant / n_images
    malignant_patients = round(n_patients * share)
    # Each class present gets at least two patients when it can, so patient-wise
    # cross-validation has both classes on both sides.
    malignant_patients = max(malignant_patients, min(2, n_malignant))
    malignant_patients = min(malignant_patients, n_malignant, n_patients - min(2, n_benign))
    benign_patients = n_patients - malignant_patients
    if benign_patients > n_benign or (n_benign and not benign_patients):
        raise ValueError(
            f"Cannot spread {n_benign} benign and {n_malignant} malignant images over "
            f"{n_patients} patients with one class per patient; choose fewer patients."
        )
    patient = np.concatenate(
        [
            _spread(rng, n_benign, benign_patients),
            _spread(rng, n_malignant, malignant_patients) + benign_patients,
        ]
    )
    target = np.repeat([0, 1], [n_benign, n_malignant])
    return patient, target


def _spread(rng: np.random.RandomState, n_images: int, n_patients: int) -> np.ndarray:
    """Patient of each image: every patient gets one image, the rest at random."""
    if n_images == 0:
        return np.empty(0, dtype=int)
    extra = rng.randint(0, n_patients, n_images - n_patients)
    return np.sort(np.concatenate([np.arange(n_patients), extra]))


def _malignant_tiles(
    rng: np.random.RandomState, grid: tuple[int, int], benign_tile_fraction: float
) -> np.ndarray:
    """Tile labels of a malignant image: a spatially contiguous tumour, >= 1 malignant tile."""
    rows, cols = grid
    n_tiles = rows * cols
    if benign_tile_fraction <= 0:
        return np.ones(n_tiles, dtype=int)
    if benign_tile_fraction >= 1:
        fraction = 1.0
    else:
        concentration = 6.0
        fraction = rng.beta(
            concentration * benign_tile_fraction, concentration * (1 - benign_tile_fraction)
        )
    n_benign = min(rng.binomial(n_tiles, fraction), n_tiles - 1)
    # A tumour is one region: grow it from a random tile through edge-sharing neighbours.
    labels = np.zeros((rows, cols), dtype=int)
    labels[rng.randint(rows), rng.randint(cols)] = 1
    for _ in range(n_tiles - n_benign - 1):
        frontier = np.argwhere((labels == 0) & _touches(labels))
        labels[tuple(frontier[rng.randint(len(frontier))])] = 1
    labels = labels.ravel()
    return labels


def _touches(mask: np.ndarray) -> np.ndarray:
    """Cells sharing an edge with a set cell of ``mask``."""
    padded = np.pad(mask, 1)
    return (padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]) > 0


# ----------------------------------------------------------------------------- public


@validate_params(
    {
        "n_images": [Interval(numbers.Integral, 1, None, closed="left")],
        # The pairs' contents (two positive ints, not bools) are checked by tiling._check_pair.
        "image_size": [tuple, list, np.ndarray],
        "grid": [tuple, list, np.ndarray],
        "malignant_fraction": [Interval(numbers.Real, 0, 1, closed="both")],
        "benign_tile_fraction": [Interval(numbers.Real, 0, 1, closed="both")],
        "n_patients": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "difficulty": [Interval(numbers.Real, 0, 1, closed="both")],
        "stain_variation": [Interval(numbers.Real, 0, None, closed="left")],
        "subtypes": ["boolean"],
        "target": [StrOptions(set(TARGETS))],
        "stain_shift": [Interval(numbers.Real, 0, 1, closed="both")],
        "n_jobs": [numbers.Integral, None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_histology(
    n_images: int = 200,
    *,
    image_size: tuple[int, int] = (460, 700),
    grid: tuple[int, int] = (3, 3),
    malignant_fraction: float = 0.5,
    benign_tile_fraction: float = 0.35,
    n_patients: int | None = None,
    difficulty: float = 0.3,
    stain_variation: float = 0.05,
    subtypes: bool = False,
    target: str = "binary",
    stain_shift: float = 0.0,
    n_jobs: int | None = -1,
    random_state: int | np.random.RandomState | None = None,
) -> Bunch:
    """Generate synthetic H&E-like histology images with ground-truth tile labels.

    Each image is split into a ``grid`` of tiles and every tile is rendered as benign or
    malignant breast tissue. Benign tissue is pink eosin stroma with gland-like rings of
    small, regular, round nuclei around pale lumens; malignant tissue is dominated by
    nests of larger, darker, irregular (elliptic, lobed) and pleomorphic nuclei. Benign
    images have only benign tiles; malignant images have a contiguous tumour region of at
    least one malignant tile and usually some benign-looking tiles, which is what
    sub-image relabeling has to discover. The data set is small and fast enough to be the
    embedded default of the demo, and its ``tile_target`` is the ground truth for
    testing tile relabeling.

    With ``subtypes=True`` the tissue is one of the eight BreakHis subtypes per patient,
    each with its own pattern, and ``tile_subtype`` gives every tile's subtype; with
    ``stain_shift`` the images are stained by a second laboratory, for train-on-one-lab,
    test-on-another benchmarks of stain normalisation and augmentation.

    Read more in the :ref:`User Guide <datasets>` (``docs/datasets.md``).

    Parameters
    ----------
    n_images : int, default=200
        Number of images.
    image_size : tuple of int, default=(460, 700)
        ``(height, width)`` in pixels; the default is that of BreakHis images. The tissue
        is drawn for the same field of view at any size, so smaller images show smaller
        nuclei (nuclei never get thinner than about one pixel).
    grid : tuple of int, default=(3, 3)
        ``(rows, cols)`` of the tile grid. Tile ``(r, c)`` covers the pixel region a tiler
        cuts: tiles of ``H // rows`` by ``W // cols`` pixels after trimming the remainder
        evenly from both sides (see :func:`tile_slices`). The few trimmed border pixels are
        rendered as the adjacent edge tile.
    malignant_fraction : float, default=0.5
        Share of malignant images.
    benign_tile_fraction : float, default=0.35
        Mean share of benign tiles in a malignant image. Each malignant image draws its own
        share around it (a beta distribution), capped so that at least one tile is
        malignant; the realised mean is therefore slightly lower.
    n_patients : int, default=None
        Number of patients. Every patient has images of a single class (as in BreakHis)
        and its own stain shift, so a random image split leaks a little, as it does on
        real data. Defaults to ``max(4, n_images // 6)`` (at most ``n_images``); each
        class gets at least two patients when it has two images.
    difficulty : float, default=0.3
        Overlap of the two tissue types, in [0, 1]. At 0 a tile's type is obvious from its
        mean colour; with growing difficulty tumour tiles keep more glands and fewer,
        smaller, paler nuclei while benign tiles gain some tumour-like cells; at 1 the two
        are nearly indistinguishable.
    stain_variation : float, default=0.05
        Magnitude of the per-patient stain shift (stain hue, intensity and illumination);
        images of one patient vary by about a third of it. 0 gives identical staining.
    subtypes : bool, default=False
        Whether to draw the eight BreakHis subtypes instead of one benign and one malignant
        tissue. Every patient gets one subtype of its class (four benign: adenosis,
        fibroadenoma, phyllodes_tumor, tubular_adenoma; four malignant: ductal, lobular,
        mucinous and papillary carcinoma), dealt out in turn so that all four subtypes of a
        class are present once the class has four patients; each subtype has its own
        tissue pattern (see ``docs/datasets.md``). A malignant patient's benign tiles show
        one benign subtype, its own, given in ``benign_subtype``. The labels, patients,
        tile labels and stains are those of ``subtypes=False`` with the same seed: only
        the tissue drawn differs. ``difficulty`` changes the malignant nuclei of ductal and
        mucinous carcinoma only.
    target : {"binary", "subtype"}, default="binary"
        What ``target`` holds, as in :func:`load_breakhis`: ``"binary"``, 0 benign and 1
        malignant; ``"subtype"`` (needs ``subtypes=True``), 0-7 in the order of the eight
        ``target_names``, fixed whichever subtypes are present.
    stain_shift : float, default=0.0
        Move every image's staining this share of the way from the default laboratory
        ("lab A", 0) to a second one ("lab B", 1) that stains differently: a bluer
        hematoxylin, an orange-red eosin, hematoxylin 1.35 times and eosin 0.65 times as
        concentrated, under a warm yellowish lamp (see ``docs/datasets.md``). The shift is
        applied in optical-density space on top of each patient's and image's own stain
        jitter and draws no random numbers: the same seed gives the same tissue in both
        labs, so a model can be trained on one lab's images and tested on the other's.
    n_jobs : int or None, default=-1
        Number of threads rendering images; -1 uses all cores. The images do not depend
        on it.
    random_state : int, RandomState instance or None, default=None
        Seed; the same seed gives identical arrays.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With the fields

        images : ndarray of shape (n_images, H, W, 3), dtype uint8
            RGB images.
        target : ndarray of shape (n_images,), dtype int
            0 benign, 1 malignant; with ``target="subtype"`` the subtype, 0-7.
        target_names : ndarray of str
            ``["benign", "malignant"]``; with ``target="subtype"`` the eight subtypes.
        tile_target : ndarray of shape (n_images, rows * cols), dtype int
            Tissue type of each tile (0 benign, 1 malignant), tiles in row-major order.
        subtype : ndarray of shape (n_images,), dtype str
            Only with ``subtypes=True``: the subtype of each image (its patient's).
        benign_subtype : ndarray of shape (n_images,), dtype str
            Only with ``subtypes=True``: the benign subtype its benign tiles show; that of
            ``subtype`` for a benign image.
        tile_subtype : ndarray of shape (n_images, rows * cols), dtype int
            Only with ``subtypes=True``: the subtype each tile shows, an index into
            ``subtype_names``: the image's subtype on malignant tiles and its
            ``benign_subtype`` on benign ones, so ``tile_subtype >= 4`` exactly where
            ``tile_target == 1``.
        subtype_names : ndarray of str
            Only with ``subtypes=True``: the eight subtypes, benign first, the order of
            :data:`BREAKHIS_SUBTYPES`.
        patient : ndarray of str
            Patient id of each image, e.g. ``"synthetic-P007"``; use it as ``groups``.
        grid : tuple of int
            The tile grid.
        DESCR : str
            Description of the data set.

    See Also
    --------
    load_breakhis : The real BreakHis images.
    BREAKHIS_SUBTYPES : The subtype names.

    Examples
    --------
    >>> from skhybrid.datasets import make_histology
    >>> data = make_histology(12, image_size=(96, 144), random_state=0)
    >>> data.images.shape, data.tile_target.shape
    ((12, 96, 144, 3), (12, 9))
    >>> bool((data.tile_target.max(axis=1) == data.target).all())
    True
    >>> data = make_histology(
    ...     24, image_size=(96, 144), subtypes=True, target="subtype", random_state=0
    ... )
    >>> data.target_names[:2].tolist(), data.tile_subtype.shape
    (['adenosis', 'fibroadenoma'], (24, 9))
    >>> bool(((data.tile_subtype >= 4) == (data.tile_target == 1)).all())
    True
    """
    image_size = _check_pair(image_size, "image_size")
    grid = _check_pair(grid, "grid")
    if grid[0] > image_size[0] or grid[1] > image_size[1]:
        raise ValueError(f"grid {grid} has more tiles than image_size {image_size} has pixels.")
    if n_patients is None:
        n_patients = min(max(4, n_images // 6), n_images)
    if n_patients > n_images:
        raise ValueError(f"n_patients={n_patients} exceeds n_images={n_images}.")
    n_images, n_patients = int(n_images), int(n_patients)
    malignant_fraction, benign_tile_fraction = (
        float(malignant_fraction),
        float(benign_tile_fraction),
    )
    difficulty = float(difficulty)
    # ``target`` names the labels' kind here; below, as before, it is the binary labels.
    target_kind, stain_shift = target, float(stain_shift)
    if target_kind == "subtype" and not subtypes:
        raise ValueError('target="subtype" needs subtypes=True.')

    rng = check_random_state(random_state)
    n_malignant = round(n_images * malignant_fraction)
    patient, target = _allocate_patients(rng, n_images - n_malignant, n_malignant, n_patients)
    order = rng.permutation(n_images)
    patient, target = patient[order], target[order]

    n_tiles = grid[0] * grid[1]
    tile_target = np.zeros((n_images, n_tiles), dtype=int)
    for i in np.flatnonzero(target == 1):
        tile_target[i] = _malignant_tiles(rng, grid, benign_tile_fraction)

    model = _build_tissue_model(np.random.default_rng(rng.randint(2**31)), image_size, difficulty)
    patient_stain = [_stain(rng, stain_variation) for _ in range(n_patients)]
    seeds = rng.randint(0, 2**31, n_images)
    stains = [_perturb_stain(rng, patient_stain[p], stain_variation) for p in patient]
    if stain_shift > 0:
        stains = [_shift_stain(stain, stain_shift) for stain in stains]
    images = np.empty((n_images, *image_size, 3), dtype=np.uint8)

    if subtypes:
        # Drawn after everything the binary data set draws, whose stream stays as it was:
        # the same seed gives the same labels, patients, tile labels and stains.
        sub_rng = np.random.default_rng(rng.randint(2**31))
        patient_code, patient_benign = _assign_subtypes(sub_rng, patient, target, n_patients)
        sub_model = _build_subtype_model(sub_rng, model)
        code, benign_code = patient_code[patient], patient_benign[patient]
        tile_subtype = np.where(tile_target == 1, code[:, None], benign_code[:, None])

        def render(i: int) -> None:
            images[i] = _render_subtype_image(
                seeds[i], model, sub_model, image_size, grid, tile_subtype[i], stains[i]
            )

    else:

        def render(i: int) -> None:
            images[i] = _render_image(seeds[i], model, image_size, grid, tile_target[i], stains[i])

    # Threads share ``images``; numpy and Pillow release the GIL for most of the work.
    # Every image has its own seed, so the result does not depend on n_jobs.
    Parallel(n_jobs=n_jobs, prefer="threads")(delayed(render)(i) for i in range(n_images))

    width = max(3, len(str(n_patients - 1)))
    data = Bunch(
        images=images,
        target=target,
        target_names=np.array(["benign", "malignant"]),
        tile_target=tile_target,
        patient=np.array([f"synthetic-P{p:0{width}d}" for p in patient]),
        grid=grid,
    )
    subtype_counts = None
    if subtypes:
        names = np.array(_SUBTYPE_NAMES)
        data.update(
            subtype=names[code],
            benign_subtype=names[benign_code],
            tile_subtype=tile_subtype,
            subtype_names=names,
        )
        if target_kind == "subtype":
            data.update(target=code, target_names=names)
        subtype_counts = np.bincount(code, minlength=len(names))
    data.DESCR = _describe(
        n_images, image_size, grid, target, tile_target, n_patients, difficulty,
        subtype_counts, stain_shift,
    )  # fmt: skip
    return data


def _describe(
    n_images: int,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    target: np.ndarray,
    tile_target: np.ndarray,
    n_patients: int,
    difficulty: float,
    subtype_counts: np.ndarray | None = None,
    stain_shift: float = 0.0,
) -> str:
    n_malignant = int(target.sum())
    malignant_images = tile_target[target == 1]
    benign_share = 1 - malignant_images.mean() if len(malignant_images) else 0.0
    extra = ""
    if subtype_counts is not None:
        lines = "\n".join(
            f"    {name:<22}{count:>6}" for name, count in zip(_SUBTYPE_NAMES, subtype_counts)
        )
        extra += f"""
Subtypes (images; one per patient; ``tile_subtype`` per tile):
{lines}
"""
    if stain_shift > 0:
        extra += f"""
Stain: shifted {stain_shift:g} of the way from lab A to lab B (bluer hematoxylin,
orange-red eosin, warm illumination)
"""
    return f"""\
.. _synthetic_histology:

Synthetic H&E histology (skhybrid.datasets.make_histology)
----------------------------------------------------------

Images: {n_images} ({n_images - n_malignant} benign, {n_malignant} malignant), \
{image_size[0]}x{image_size[1]} RGB uint8
Patients: {n_patients}, each with images of one class and its own stain shift
Tile grid: {grid[0]}x{grid[1]}; ground-truth tile labels in ``tile_target``
Benign tiles in malignant images: {benign_share:.0%}
Difficulty: {difficulty:g} (0 separable, 1 nearly indistinguishable)

Rendered in optical-density space with hematoxylin (purple nuclei) and eosin (pink
stroma). Benign tissue: glands lined by small, regular, round nuclei around pale lumens.
Malignant tissue: nests of larger, darker, irregular and pleomorphic nuclei. Malignant
images contain benign tiles, as BreakHis images contain healthy tissue around a tumour.

Split patient-wise (``GroupKFold(groups=data.patient)``): a random split puts images of
one patient, with their shared staining, on both sides.
{extra}"""
