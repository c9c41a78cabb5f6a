"""``skhybrid train --resume OUT``: what a training run keeps so that it can be continued.

A ``train`` run (without ``--cv``) writes, once its images are read, ``OUT/run.json``: its
command line and the folder it was started from. Its final training then writes a checkpoint
into ``OUT/checkpoint/`` at the end of every epoch, next to the self-learning result
(:func:`skhybrid.workflow.run_experiment` with ``checkpoint=``). ``--resume OUT`` reads
``run.json``, parses that command line again (so the data, the split, the model and the seed
are the interrupted run's own), and runs it with the checkpoint in place: the rounds of
self-learning are not redone and training continues where it stopped. A run that finishes
removes ``OUT/checkpoint/`` (it is several times the size of the model); ``run.json`` stays as
the record of how the run was started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exceptions import PathNotFoundError, UserError

__all__ = [
    "CHECKPOINT_DIR",
    "RUN_FILE",
    "describe_interruption",
    "remove_resume_state",
    "resume_arguments",
    "resume_hint",
    "write_run_file",
]

#: The command line of a ``train`` run, in its output folder.
RUN_FILE = "run.json"
#: The folder of its checkpoint and self-learning state, in its output folder.
CHECKPOINT_DIR = "checkpoint"
#: What may come with ``--resume OUT`` on the command line: how much to print, nothing else.
_ALLOWED_WITH_RESUME = ("-q", "--quiet", "--traceback")
_FORMAT = 1


def write_run_file(out: Path, command_line: Sequence[str]) -> Path:
    """Write ``out/run.json``: the ``train`` command line (without the program) and its cwd."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_FILE
    record = {"format": _FORMAT, "argv": list(command_line[1:]), "cwd": os.getcwd()}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)
    return path


def resume_arguments(
    parser: argparse.ArgumentParser, out: Path, command_line: Sequence[str]
) -> argparse.Namespace:
    """The arguments of the interrupted run in ``out``, ready to run again with its checkpoint.

    ``command_line`` is the resuming command's; only ``-q``/``--quiet`` and ``--traceback``
    may come with ``--resume`` (they change what is printed, not what is trained), and they
    apply. Relative paths of the saved command line are taken from the folder the run was
    started in.

    Raises
    ------
    PathNotFoundError
        When ``out`` does not exist.
    UserError
        When other options come with ``--resume``, when ``out`` holds no interrupted run, or
        when its run finished.
    """
    extra = _options_besides_resume(command_line)
    if extra:
        raise UserError(
            f"--resume continues the run in {out} with its own settings ({out / RUN_FILE}); "
            f"only -q and --traceback may come with it, not {' '.join(extra)}"
        )
    if not out.is_dir():
        raise PathNotFoundError(f"--resume {out}: no such folder")
    path = out / RUN_FILE
    if not path.is_file():
        raise UserError(
            f"--resume {out}: the folder holds no interrupted `skhybrid train` run (no "
            f"{RUN_FILE}; runs with --cv are not checkpointed)"
        )
    try:
        record = json.loads(path.read_text())
        argv, cwd = list(record["argv"]), Path(record["cwd"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is not a skhybrid run file ({exc})") from exc
    if (out / "report.json").is_file() and not (out / CHECKPOINT_DIR).is_dir():
        raise UserError(
            f"--resume {out}: that run finished (report.json is there); there is nothing to resume"
        )
    # Without a checkpoint folder (stopped while tiling) the run starts over with its settings.
    args = parser.parse_args(argv)
    if args.data_dir is not None and not args.data_dir.is_absolute():
        args.data_dir = cwd / args.data_dir
    if args.weights not in (None, "imagenet") and not Path(args.weights).is_absolute():
        args.weights = str(cwd / args.weights)
    args.out = out  # the folder may have moved since
    args.quiet = any(token in ("-q", "--quiet") for token in command_line) or args.quiet
    args.traceback = "--traceback" in command_line or getattr(args, "traceback", False)
    args.resume = out
    return args


def _options_besides_resume(command_line: Sequence[str]) -> list[str]:
    tokens = list(command_line[1:])
    if tokens and tokens[0] == "train":
        tokens = tokens[1:]
    extra, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token == "--resume":
            skip = True  # its value
        elif token.startswith("--resume=") or token in _ALLOWED_WITH_RESUME:
            continue
        else:
            extra.append(token)
    return extra


def remove_resume_state(out: Path) -> None:
    """Remove ``out/checkpoint`` (after a finished run, or before a new run with --overwrite)."""
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)


def resume_hint(out: Path) -> str:
    """The command that continues the run in ``out``."""
    return f"skhybrid train --resume {out}"


def describe_interruption(stop: Any, out: Path, saved: Path) -> str:
    """What the command line prints when training was interrupted: where the model is, and how
    to continue."""
    from .metrics._history import _best_epoch

    clf = stop.estimator.steps[-1][1] if hasattr(stop.estimator, "steps") else stop.estimator
    best = _best_epoch(list(clf.history))
    best_text = f" (best epoch {best})" if best is not None else ""
    return (
        f"interrupted after epoch {stop.epoch} of {clf.max_epochs}; the best model so far"
        f"{best_text} is in {saved}. Continue the training with: {resume_hint(out)}"
    )
