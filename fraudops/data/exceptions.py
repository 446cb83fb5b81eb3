"""Errors of the data package, all rooted in `DataError`."""

from __future__ import annotations

from collections.abc import Sequence


class DataError(ValueError):
    """Base of every error raised by `fraudops.data` (bad input, not a bug)."""


class FrameError(DataError):
    """A data frame does not follow the platform's transaction layout."""


class MappingError(DataError):
    """A column mapping file is not valid (wrong YAML, unknown keys, bad values)."""


class SourceError(DataError):
    """The source data does not fit its mapping.

    `problems` lists every missing or invalid column, so the user fixes all of them at once.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"{source} does not fit the mapping ({len(self.problems)} problem(s)):\n{lines}"
        )


class UnsupportedFormatError(DataError):
    """The source file is neither CSV nor Parquet."""
