"""skhybrid's own error classes: what a user can fix, told apart from bugs.

The command line prints these as one line (``skhybrid <command>: error: <message>``, exit
status 1) and shows a traceback for anything else, because anything else is a bug. Each class
also derives from the built-in exception the code raised before it existed
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps catching it.

>>> from skhybrid.exceptions import DataError
>>> issubclass(DataError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "PathNotFoundError",
    "SkhybridError",
    "TrainingInterrupted",
    "UserError",
]


class SkhybridError(Exception):
    """Base class of the errors a user can fix (bad input, not a bug in skhybrid)."""


class UserError(SkhybridError, ValueError):
    """A value the user gave is wrong: an option out of range, an unknown name, a bad file.

    Also a ``ValueError``, what these checks raised before.
    """


class DataError(UserError):
    """The data the user gave cannot be used: file names, labels, too few patients to split."""


class PathNotFoundError(SkhybridError, FileNotFoundError):
    """A file or folder the user named does not exist (also a ``FileNotFoundError``)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C) after a checkpoint; the best model so far is attached.

    A ``KeyboardInterrupt``, so a script still stops on Ctrl-C; a caller that wants the
    model catches this first (the command line saves it and says how to resume).

    Attributes
    ----------
    estimator : estimator
        The interrupted classifier, holding the best epoch's weights among the epochs that
        completed (or, from :func:`skhybrid.workflow.run_experiment`, the pipeline of the
        tiler and that classifier).
    epoch : int
        Epochs completed, over the whole history.
    checkpoint : str
        The folder of the checkpoint to resume from.
    """

    def __init__(self, estimator: object, epoch: int, checkpoint: str) -> None:
        super().__init__(f"training interrupted after epoch {epoch}; checkpoint in {checkpoint}")
        self.estimator = estimator
        self.epoch = epoch
        self.checkpoint = checkpoint
