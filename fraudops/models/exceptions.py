"""Errors raised by the model package; all derive from `ModelError`."""

from __future__ import annotations


class ModelError(Exception):
    """Base class of every error raised by `fraudops.models`."""


class ModelLoadError(ModelError):
    """A model could not be found or read (bad URI, missing files, wrong format)."""


class BackendUnavailableError(ModelLoadError):
    """The models were read but the chosen backend cannot run them (no onnxruntime package,
    an ONNX export refused); torch can."""


class FeatureSpecMismatchError(ModelLoadError):
    """The model was trained with a feature-spec version other than the code's."""


class ModelInputError(ModelError, ValueError):
    """Scoring input has the wrong shape or type for the loaded models."""
