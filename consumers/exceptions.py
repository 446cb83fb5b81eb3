"""Errors of the stream consumer, all rooted in `ConsumerError`.

A predictor that does not answer now raises `fraudops.protocol.PredictorUnavailableError`,
shared with the gateway (retried here with back-off).
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base of every error raised by `consumers`."""


class PoisonMessageError(ConsumerError):
    """A message that can never be processed; it goes to the dead-letter topic with `reason`
    (and `error_type`, the name of the exception that refused it, when there was one)."""

    def __init__(self, reason: str, detail: str, error_type: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.error_type = error_type
        super().__init__(f"{reason}: {detail}")


class PredictorError(ConsumerError):
    """The predictor answered something the consumer cannot use (not retried)."""


class IncompatibleModelError(PredictorError):
    """The predictor serves a model built for other features than the consumer computes."""


class NotificationError(ConsumerError):
    """A notification could not be delivered (it stays in the outbox and is retried)."""


class ShutdownRequested(ConsumerError):
    """Raised inside a back-off loop when the consumer was asked to stop."""
