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

__all__ = ["DataError", "PathNotFoundError", "SkhybridError", "UserError"]


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
