"""Client of the KServe predictor: keep-alive HTTP, binary V2 tensors, back-off when it is down.

A 5xx answer, a timeout or a refused connection means "not now" (`PredictorUnavailableError`,
retried with exponential back-off until it answers or the consumer is asked to stop); a 4xx or an
unreadable answer means the consumer and the predictor disagree (`PredictorError`, not retried:
the batch is not committed and the process exits so that an operator sees it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_when_event_set,
    wait_exponential_jitter,
)

from consumers.exceptions import IncompatibleModelError, PredictorError, ShutdownRequested
from consumers.metrics import ConsumerMetrics
from fraudops import protocol
from fraudops.features import FeatureSpec
from fraudops.protocol import PredictorUnavailableError
from fraudops.served_model import read_served_model

log = logging.getLogger(__name__)

ScoreFn = Callable[[np.ndarray, np.ndarray], protocol.ScoreBatch]


class PredictorClient:
    """One keep-alive connection pool to the predictor's V2 REST endpoints."""

    def __init__(self, base_url: str, timeout_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                  transport=transport, limits=httpx.Limits(max_keepalive_connections=4))

    def metadata(self) -> dict[str, Any]:
        """The V2 model metadata document."""
        response = self._request("GET", protocol.metadata_path())
        return response.json()

    def score(self, x: np.ndarray, mask: np.ndarray) -> protocol.ScoreBatch:
        """Score one micro-batch (binary V2 encoding both ways)."""
        body, headers = protocol.encode_request(x, mask, binary=True)
        response = self._request("POST", protocol.infer_path(), content=body, headers=headers)
        try:
            batch = protocol.decode_response(response.content, response.headers)
        except protocol.ProtocolError as error:
            raise PredictorError(f"unreadable predictor answer: {error}") from error
        if len(batch) != len(x):
            raise PredictorError(f"predictor answered {len(batch)} rows for {len(x)}")
        return batch

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:  # refused, reset, timeout
            raise PredictorUnavailableError(f"{method} {path}: {error!r}") from error
        if response.status_code >= 500 or response.status_code == 429:
            raise PredictorUnavailableError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise PredictorError(f"{method} {path}: HTTP {response.status_code}: "
                                 f"{response.text[:300]}")
        return response


def with_backoff(call: Callable[..., Any], stop: threading.Event, *, initial_s: float,
                 max_s: float, metrics: ConsumerMetrics | None = None) -> Callable[..., Any]:
    """Wrap `call` to retry `PredictorUnavailableError` forever, until `stop` is set.

    Raises `ShutdownRequested` when asked to stop while the predictor is still away.
    """
    def before_sleep(state: Any) -> None:
        if metrics is not None:
            metrics.errors.labels(kind="predictor_unavailable").inc()
        log.warning("predictor unavailable (attempt %d): %s; retrying", state.attempt_number,
                    state.outcome.exception())

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:  # the common case, without building a retry controller per call
            return call(*args, **kwargs)
        except PredictorUnavailableError as error:
            if metrics is not None:
                metrics.errors.labels(kind="predictor_unavailable").inc()
            log.warning("predictor unavailable: %s; retrying", error)
        retrying = Retrying(retry=retry_if_exception_type(PredictorUnavailableError),
                            wait=wait_exponential_jitter(initial=initial_s, max=max_s),
                            stop=stop_when_event_set(stop), before_sleep=before_sleep,
                            sleep=lambda seconds: stop.wait(seconds))
        try:
            return retrying(call, *args, **kwargs)
        except RetryError as error:
            raise ShutdownRequested("stopped while waiting for the predictor") from error

    return wrapped


def timed(score: ScoreFn, metrics: ConsumerMetrics) -> ScoreFn:
    """`score` that records each call's latency."""
    def call(x: np.ndarray, mask: np.ndarray) -> protocol.ScoreBatch:
        start = time.perf_counter()
        result = score(x, mask)
        metrics.predictor_latency.observe(time.perf_counter() - start)
        return result
    return call


def spec_from_metadata(doc: dict[str, Any]) -> tuple[FeatureSpec, protocol.ModelInfo]:
    """The feature spec the served model was trained on, checked against this code's spec
    (`fraudops.served_model`); `IncompatibleModelError` when they differ."""
    try:
        served = read_served_model(doc)
    except protocol.ProtocolError as error:
        raise IncompatibleModelError(str(error)) from error
    return served.spec, served.info
