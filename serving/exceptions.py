"""Errors of the serving unit; all derive from `ServingError`.

The predictor's own refusals are not repeated here: a model built for other features raises
`fraudops.models.FeatureSpecMismatchError` (where the check lives, in loading), and a malformed
request `kserve.errors.InvalidInput` (KServe answers it with 400). A predictor the gateway
cannot use now raises `fraudops.protocol.PredictorUnavailableError`, the one the consumer raises.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class of every error raised by `serving`."""


class ConfigurationError(ServingError):
    """Settings that cannot work (no API key, bad model URI, ...)."""


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
