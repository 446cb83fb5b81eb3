"""Predictor client: failure classification, back-off until it answers or the consumer stops,
and the feature-spec check against the model metadata."""

from __future__ import annotations

import threading
import time

import pytest

from consumers.exceptions import IncompatibleModelError, ShutdownRequested
from consumers.predictor import PredictorClient, spec_from_metadata, with_backoff
from fraudops import protocol
from fraudops.features import build_spec
from fraudops.protocol import PredictorUnavailableError
from fraudops.testing import free_port


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
