"""Helpers shared by the benchmark modules: timing, result rows, machine info, subprocesses.

Every figure that matters is a *ratio* between two measurements taken in the same run, on the
same machine and data, so that noise from other processes and differences between machines
mostly cancel out. Timings use :func:`time.perf_counter`, warm-up calls and the median of
repeats, with the candidate and its reference interleaved repeat by repeat.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "SkipBenchmark",
    "compare",
    "machine_info",
    "make_row",
    "run_python",
    "scale",
    "skip_row",
    "time_call",
]

#: Size of the run: ``"full"``, ``"quick"`` or ``"smoke"`` (tiny, for the runner's own tests;
#: its figures mean nothing). Set by the runner before it calls the benchmarks.
MODE = "full"


class SkipBenchmark(Exception):
    """Raised by a benchmark that cannot run here (a dependency or module is missing)."""


def scale(full: Any, quick: Any, smoke: Any | None = None) -> Any:
    """Pick a size by the run mode (``smoke`` defaults to ``quick``)."""
    if MODE == "smoke":
        return quick if smoke is None else smoke
    return quick if MODE == "quick" else full


def time_call(
    fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1, number: int = 1
) -> list[float]:
    """Seconds per call of ``fn`` over ``repeat`` timed runs of ``number`` calls each.

    Parameters
    ----------
    fn : callable
        Called with no arguments.
    repeat : int, default=5
        Timed runs.
    warmup : int, default=1
        Untimed calls first (imports, allocator, kernel selection, caches).
    number : int, default=1
        Calls per timed run (for very short calls).

    Returns
    -------
    times : list of float
        Seconds per call, one entry per run; summarise with the median.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return times


def compare(
    candidates: dict[str, Callable[[], Any]],
    *,
    repeat: int = 5,
    warmup: int = 1,
    sync: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """Median seconds per call of several functions, interleaved run by run.

    Interleaving (A, B, A, B, ...) rather than (A, A, ..., B, B, ...) spreads background load
    evenly over the candidates, so their ratio is fair on a shared machine. ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called before and after each timed call, so that work a
    call queued on a GPU is counted in that call.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        for name, fn in candidates.items():
            if sync is not None:
                sync()
            start = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def make_row(
    name: str,
    value: float,
    reference: float | None,
    unit: str,
    *,
    goal: float | None = None,
    goal_op: str = ">=",
    goal_on: str = "ratio",
    ratio: float | None = None,
    reference_name: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One result row.

    Parameters
    ----------
    name : str
        What is measured.
    value, reference : float
        The candidate's figure and the reference's, in ``unit``.
    unit : str
        Unit of ``value`` and ``reference`` (e.g. ``"images/s"``).
    goal : float or None
        Target for ``goal_on``; ``None`` for informational rows (``met`` is then None).
    goal_op : {">=", "<="}
        How ``goal`` is compared.
    goal_on : {"ratio", "value"}
        Whether the goal is on the ratio or on the value itself.
    ratio : float or None
        Defaults to ``value / reference``.
    reference_name : str
        What the reference is.
    note : str
        Anything the reader needs to judge the figure.
    """
    if ratio is None and reference:
        ratio = value / reference
    met = None
    if goal is not None:
        subject = ratio if goal_on == "ratio" else value
        if subject is not None:
            met = bool(subject >= goal) if goal_op == ">=" else bool(subject <= goal)
    return {
        "name": name,
        "value": value,
        "reference": reference,
        "reference_name": reference_name,
        "ratio": ratio,
        "goal": goal,
        "goal_op": goal_op,
        "goal_on": goal_on,
        "unit": unit,
        "met": met,
        "status": "ok",
        "note": note,
    }


def skip_row(name: str, reason: str, *, status: str = "skipped") -> dict[str, Any]:
    """A row for a benchmark that did not run (``status`` "skipped" or "error")."""
    return {
        "name": name,
        "value": None,
        "reference": None,
        "reference_name": "",
        "ratio": None,
        "goal": None,
        "goal_op": ">=",
        "goal_on": "ratio",
        "unit": "",
        "met": None,
        "status": status,
        "note": reason,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions and torch's threading and bf16 support."""
    import numpy as np

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
    }
    with contextlib.suppress(ValueError, OSError, AttributeError):  # non-POSIX systems
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1)
    flags = _cpu_flags()
    info["cpu_flags"] = sorted(
        flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"}
    )
    try:
        import PIL

        info["pillow"] = PIL.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cuda"] = torch.cuda.is_available()
        try:
            info["bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - build without oneDNN
            info["bf16_supported"] = "avx512_bf16" in flags or "amx_bf16" in flags
    except ImportError:  # pragma: no cover
        info["torch"] = None
    return info


_CHILD_PRELUDE = """
import json, os, resource, sys
def _rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
def _peak():
    # VmHWM, not getrusage's ru_maxrss: on Linux ru_maxrss survives exec, so a child started by
    # a big parent would report the parent's peak.
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
def _reset_peak():
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current resident size, so the
    # peak measured next excludes warm-up calls.
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
def report(**values):
    print('@@RESULT@@' + json.dumps(values))
"""


def run_python(code: str, *, timeout: float = 600, env: dict[str, str] | None = None) -> dict:
    """Run ``code`` in a fresh interpreter and return what it passed to ``report(...)``.

    The child has ``_rss()`` (current resident bytes), ``_peak()`` (peak resident bytes,
    ``VmHWM``), ``_reset_peak()`` (peak := current, after warm-up) and ``report(**values)``.
    One process per measurement keeps peaks apart.
    """
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD_PRELUDE + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@") :])
    raise RuntimeError(
        f"benchmark subprocess failed (exit {result.returncode}): {result.stderr[-2000:]}"
    )


def peak_rss_self() -> int:
    """Peak resident bytes of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fmt(value: float | None, digits: int = 3) -> str:
    """Format a number for the table with ``digits`` significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of result rows."""
    header = "| benchmark | value | reference | ratio | goal | met | note |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | - | - | - | - | {row['status']} | {row['note']} |")
            continue
        unit = row["unit"]
        ref = fmt(row["reference"])
        if row["reference_name"] and row["reference"] is not None:
            ref = f"{ref} ({row['reference_name']})"
        goal = "-"
        if row["goal"] is not None:
            goal = f"{row['goal_on']} {row['goal_op']} {fmt(row['goal'])}"
        met = "-" if row["met"] is None else ("yes" if row["met"] else "**no**")
        ratio = "-" if row["ratio"] is None else f"{fmt(row['ratio'])}x"
        lines.append(
            f"| {row['name']} | {fmt(row['value'])} {unit} | {ref} | {ratio} | {goal} | {met} "
            f"| {row['note']} |"
        )
    return "\n".join(lines)
