"""skhybrid's speed and memory benchmarks.

Run them with ``python -m benchmarks [--quick] [--only NAME ...] [--out DIR]`` (or
``make bench`` / ``make bench-quick``). Each module ``benchmarks/bench_<name>.py`` exposes
``run(quick: bool) -> list[dict]``; every row compares a candidate against a reference measured
in the same run and states its goal (see :func:`benchmarks._common.make_row`). A benchmark
whose dependency is missing raises :class:`~benchmarks._common.SkipBenchmark` (or an
``ImportError``) and is reported as skipped. See ``docs/performance.md``.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from . import _common
from ._common import SkipBenchmark, skip_row

__all__ = ["SkipBenchmark", "discover", "run_benchmarks"]


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_tiling`` -> ``"tiling"``), sorted."""
    return sorted(
        info.name.removeprefix("bench_")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("bench_")
    )


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.bench_{name}")


def run_benchmarks(
    names: Iterable[str] | None = None,
    *,
    mode: str = "full",
    modules: dict[str, Any] | None = None,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Run benchmarks and return their rows, each tagged with its ``benchmark`` name.

    Parameters
    ----------
    names : iterable of str, optional
        Benchmarks to run (default: all discovered).
    mode : {"full", "quick", "smoke"}, default="full"
        ``"smoke"`` is tiny sizes for tests; its figures mean nothing.
    modules : dict, optional
        ``{name: module}`` to run instead of discovering (for tests).
    log : callable, default=print
        Progress messages.

    Returns
    -------
    rows : list of dict
        A missing dependency gives one row with ``status="skipped"`` and the reason; any other
        exception one row with ``status="error"``: one benchmark never stops the others.
    """
    if mode not in ("full", "quick", "smoke"):
        raise ValueError(f"mode must be 'full', 'quick' or 'smoke', got {mode!r}.")
    _common.MODE = mode
    quick = mode != "full"
    available = modules if modules is not None else {name: None for name in discover()}
    selected = list(available) if names is None else list(names)
    unknown = [name for name in selected if name not in available]
    if unknown:
        raise ValueError(f"Unknown benchmark(s) {unknown}; available: {sorted(available)}.")
    rows: list[dict[str, Any]] = []
    for name in selected:
        start = time.perf_counter()
        log(f"[{name}] running ({mode})...")
        try:
            module = available[name] if available[name] is not None else _load(name)
            produced = list(module.run(quick))
        except (SkipBenchmark, ImportError) as exc:
            produced = [skip_row(name, f"skipped: {type(exc).__name__}: {exc}")]
        except Exception as exc:  # a broken benchmark is reported, never fatal to the run
            log(traceback.format_exc())
            produced = [skip_row(name, f"{type(exc).__name__}: {exc}", status="error")]
        elapsed = time.perf_counter() - start
        for row in produced:
            row.setdefault("benchmark", name)
            row["benchmark"] = name
            row["elapsed_s"] = round(elapsed, 2)
        log(f"[{name}] done in {elapsed:.1f} s")
        rows.extend(produced)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Counts of rows by outcome: goals met / missed, informational, skipped, errors."""
    counts = {"met": 0, "missed": 0, "info": 0, "skipped": 0, "error": 0}
    for row in rows:
        if row["status"] != "ok":
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        elif row["met"] is None:
            counts["info"] += 1
        else:
            counts["met" if row["met"] else "missed"] += 1
    return counts
