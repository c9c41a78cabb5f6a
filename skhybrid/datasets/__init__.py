"""Data sets: the real BreakHis images and an embedded synthetic look-alike.

- :func:`load_breakhis` reads a local copy of BreakHis (Spanhol et al., 2016).
- :func:`make_histology` generates H&E-like images with ground-truth tile labels, optionally
  of the eight BreakHis subtypes (:data:`BREAKHIS_SUBTYPES`) and stained by a second lab.
"""

from __future__ import annotations

from ._breakhis import BREAKHIS_SUBTYPES, load_breakhis, parse_breakhis_filename
from ._synthetic import make_histology, tile_slices

__all__ = [
    "BREAKHIS_SUBTYPES",
    "load_breakhis",
    "make_histology",
    "parse_breakhis_filename",
    "tile_slices",
]
