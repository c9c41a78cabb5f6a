"""Command line: ``python -m benchmarks [--quick] [--only NAME ...] [--out DIR]``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from . import discover, run_benchmarks, summary
from ._common import format_table, machine_info


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print a Markdown table and write ``DIR/results.json``.

    Returns 0, or 1 when a benchmark raised an error (missed goals and skipped benchmarks do
    not fail the run: speed depends on the machine and is reported, never asserted).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes to check the runner (figures mean nothing)"
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"subset of {discover()}")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(discover()))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    print(
        f"# skhybrid benchmarks ({mode})\n\n{machine['cpu']}, {machine['cores_usable']} cores, "
        f"torch {machine.get('torch')} ({machine.get('torch_threads')} threads), "
        f"bf16 {machine.get('bf16_supported')}\n",
        file=sys.stderr,
    )
    start = time.perf_counter()
    rows = run_benchmarks(args.only, mode=mode, log=lambda msg: print(msg, file=sys.stderr))
    elapsed = time.perf_counter() - start
    counts = summary(rows)
    table = format_table(rows)
    print(table)
    print(
        f"\n{counts['met']} goals met, {counts['missed']} missed, {counts['info']} informational, "
        f"{counts['skipped']} skipped, {counts['error']} errors; {elapsed:.0f} s "
        f"(`{command.strip()}`)"
    )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": command.strip(),
            "mode": mode,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 1),
            "machine": machine,
            "summary": counts,
            "rows": rows,
        }
        path = args.out / "results.json"
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        (args.out / "results.md").write_text(table + "\n", encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
