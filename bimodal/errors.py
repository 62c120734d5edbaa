"""Exception types shared by the whole project.

Every error a user can provoke with bad input or a bad setting is one of these, so callers
can catch ``BimodalError`` and the message always says *what* was wrong and *where*.
"""
from __future__ import annotations


class BimodalError(Exception):
    """Base class of every error raised on purpose by bimodal."""


class ConfigError(BimodalError, ValueError):
    """A configuration names a key that does not exist or gives a value of the wrong kind."""


class DataError(BimodalError, ValueError):
    """Input data is missing, unreadable or of the wrong shape / rate / length.

    Parameters
    ----------
    message : what was wrong and what was expected.
    path : the file (or folder) concerned, if any; it is put at the front of the message.
    field : the field / array / attribute concerned, if any.
    """

    def __init__(self, message: str, path=None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.field = field
        where = []
        if self.path is not None:
            where.append(self.path)
        if field is not None:
            where.append(f"field '{field}'")
        prefix = (": ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


def require_file(path, what: str):
    """``Path(path)`` if it is a non-empty file, else a DataError naming it (``what``: "audio file" ...)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} does not exist", path=path)
    if path.stat().st_size == 0:
        raise DataError(f"{what} is empty (0 bytes)", path=path)
    return path


class ShapeError(DataError):
    """Arrays whose shapes disagree with each other or with a model."""


class TrainingDivergedError(BimodalError, FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters and was stopped."""
