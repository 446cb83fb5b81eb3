"""Errors of the serving unit; all derive from `ServingError`."""

from __future__ import annotations


class ServingError(Exception):
    """Base class of every error raised by `serving`."""


class ConfigurationError(ServingError):
    """Settings that cannot work (no API key, bad model URI, ...)."""


class IncompatibleModelError(ServingError):
    """A model built for other features (spec version, dimension, sequence length) than the code's."""


class ModelSwapError(ServingError):
    """A new champion could not be loaded; the predictor keeps serving the previous one."""


class PredictorUnavailableError(ServingError):
    """The gateway cannot reach the predictor or got no usable answer from it."""


class KafkaUnavailableError(ServingError):
    """The gateway could not get a produce acknowledgement from Kafka."""


class StoreUnavailableError(ServingError):
    """The gateway cannot reach the decision store."""


class RulesUnavailableError(ServingError):
    """A rule set is configured but none could be put in force (it does not compile against the
    served model's features): `/v1/score` refuses rather than decide without the rules and
    lists, as the consumer refuses to start."""


class ReportNotFoundError(ServingError, LookupError):
    """No drift report with this id (or not in the requested format)."""
