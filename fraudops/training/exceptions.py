"""Errors raised by the training package; all derive from `TrainingError`."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error raised by `fraudops.training`."""


class TrainingDataError(TrainingError, ValueError):
    """The data cannot be trained or evaluated on (too few rows, no labels, one class only)."""


class RegistryError(TrainingError):
    """A registry operation failed (unknown model, missing alias, bad tracking URI)."""
