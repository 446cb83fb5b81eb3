"""Errors of the local platform, all rooted in `LocalPlatformError`."""

from __future__ import annotations

from pathlib import Path


class LocalPlatformError(RuntimeError):
    """Base of every error raised by `local`."""


class ProcessFailedError(LocalPlatformError):
    """A supervised process exited when it should not have, or never became ready.

    Carries the process name, its log file and the last lines of that log, so the user sees why
    without opening the file.
    """

    def __init__(self, name: str, reason: str, log_path: Path | None = None,
                 log_tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        where = f" (log: {log_path})" if log_path else ""
        tail = f"\n--- last lines of the log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{name}: {reason}{where}{tail}")


class JobFailedError(ProcessFailedError):
    """A one-shot job (training pipeline, drift check, topic creation) failed."""


class PrerequisiteError(LocalPlatformError):
    """Something the platform needs is not installed (broker binary, a unit's extra)."""
