"""Predictor client: failure classification, back-off until it answers or the consumer stops,
and the feature-spec check against the model metadata."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from consumers.exceptions import IncompatibleModelError, PredictorError, ShutdownRequested
from consumers.predictor import PredictorClient, spec_from_metadata, with_backoff
from fraudops import protocol
from fraudops.features import build_spec
from fraudops.protocol import PredictorUnavailableError
from fraudops.testing import free_port, serve_http


def metadata(spec, seq_len: int = 16, fingerprint: str | None = None) -> dict:
    return {"name": protocol.MODEL_NAME,
            "inputs": [{"name": "sequences", "datatype": "FP32", "shape": [-1, seq_len, spec.dim]},
                       {"name": "mask", "datatype": "BOOL", "shape": [-1, seq_len]}],
            "parameters": {protocol.PARAM_SPEC_VERSION: spec.version,
                           protocol.PARAM_SPEC_FINGERPRINT: fingerprint or spec.fingerprint,
                           protocol.PARAM_FEATURE_NAMES: ",".join(spec.names)}}


def test_spec_from_metadata_recovers_passthrough() -> None:
    served = build_spec(("V1", "V2"))
    spec, info = spec_from_metadata(metadata(served, seq_len=8))
    assert spec == served and info.seq_len == 8


def test_spec_mismatch_is_refused() -> None:
    with pytest.raises(IncompatibleModelError, match="fingerprint"):
        spec_from_metadata(metadata(build_spec(), fingerprint="0000"))
    with pytest.raises(IncompatibleModelError):
        spec_from_metadata({"inputs": []})


def test_refused_connection_is_unavailable() -> None:
    client = PredictorClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(PredictorUnavailableError):
        client.metadata()
    client.close()


class _Answers(BaseHTTPRequestHandler):
    """Answers every request with the status and body its path names (``/503``, ``/400``...)."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        status = int(self.path.strip("/").split("/")[0])
        body = b"bad input: mask has the wrong shape" if status != 200 else b"not a V2 answer"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answers() -> Iterator[str]:
    with serve_http(_Answers) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.mark.parametrize(("status", "error", "message"), [
    (503, PredictorUnavailableError, "HTTP 503"),
    (429, PredictorUnavailableError, "HTTP 429"),
    (400, PredictorError, "HTTP 400: bad input: mask has the wrong shape"),
    (200, PredictorError, "unreadable predictor"),
])
def test_answers_are_classified(answers: str, status: int, error: type, message: str) -> None:
    """5xx and 429 are "not now" (retried); 4xx and an unreadable answer are a disagreement
    (not retried), with the predictor's message."""
    client = PredictorClient(f"{answers}/{status}", timeout_s=2)
    x, mask = np.zeros((2, 16, 3), np.float32), np.ones((2, 16), bool)
    with pytest.raises(error, match=message):
        client.score(x, mask)
    with pytest.raises(error):
        client.metadata()
    client.close()


def test_a_predictor_that_does_not_answer_in_time_is_unavailable() -> None:
    import socket

    with socket.socket() as listening:  # accepts (the kernel's backlog), never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        client = PredictorClient(f"http://127.0.0.1:{listening.getsockname()[1]}", timeout_s=0.3)
        start = time.monotonic()
        with pytest.raises(PredictorUnavailableError, match="timed out"):
            client.metadata()
        assert time.monotonic() - start < 2  # one try: the client does not retry by itself
        client.close()


def test_backoff_retries_until_success() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise PredictorUnavailableError("down")
        return "scored"

    wrapped = with_backoff(flaky, threading.Event(), initial_s=0.01, max_s=0.05)
    assert wrapped() == "scored" and len(calls) == 4


def test_backoff_stops_when_asked() -> None:
    stop = threading.Event()
    client = PredictorClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.2)
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ShutdownRequested):
        with_backoff(client.metadata, stop, initial_s=0.05, max_s=0.1)()
    client.close()
