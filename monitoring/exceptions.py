"""Errors of the monitoring unit, all rooted in `MonitoringError`."""

from __future__ import annotations


class MonitoringError(Exception):
    """Base of every error raised by `monitoring`."""


class ReferenceNotFoundError(MonitoringError):
    """The champion's reference data cannot be found (no lineage logged, file missing)."""


class EmptyWindowError(MonitoringError):
    """The current window holds too few scored transactions to compare distributions."""


class ReportStorageError(MonitoringError):
    """A drift report could not be written to its destination."""


class RetrainLaunchError(MonitoringError):
    """The retraining pipeline could not be started (the decision is still logged)."""


class DriftConfigError(MonitoringError, ValueError):
    """The drift settings name something the champion's features cannot provide."""
