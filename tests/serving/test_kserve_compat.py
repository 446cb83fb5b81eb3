"""What `serving.kserve_compat` relies on in KServe: these fail when KServe changes it.

Each test names the assumption. The in-process app is built the way `ModelServer.start` builds
its own (our routes first, then KServe's `register_v2_endpoints` and exception handlers), with a
private metrics registry; the subprocess tests (test_predictor_server.py) cover the real server.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, generic_exception_handler, invalid_input_handler
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import (
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    serialize_byte_tensor,
)
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from prometheus_client import REGISTRY, CollectorRegistry
from serving_helpers import ModelDirs, random_batch

from fraudops import protocol
from fraudops.models import load_scorer
from fraudops.schema import DECISIONS
from serving.kserve_compat import BytesOutput, install_routes, parse_v2_body, serialize_strings
from serving.metrics import PredictorMetrics
from serving.predictor import FraudPredictor, ServedModel
from serving.validation import decode_v2


def _binary_request(batch: int, seq_len: int, dim: int) -> tuple[bytes, dict[str, str]]:
    body, headers = protocol.encode_request(*random_batch(batch, seq_len, dim), binary=True)
    return body, {k.lower(): v for k, v in headers.items()}


def test_raw_inputs_are_read_in_place_by_as_numpy() -> None:
    """`InferRequest(raw_inputs=...)` keeps the bytes and `as_numpy` reads them without a copy
    (no list round trip): the whole point of framing the body ourselves."""
    body, headers = _binary_request(3, 4, 5)
    request = parse_v2_body(body, headers, "m")
    whole = np.frombuffer(body, dtype=np.uint8)
    for item in request.inputs:
        assert item.data is None
        assert np.shares_memory(item.as_numpy(), whole), item.name
    x, mask = random_batch(3, 4, 5)
    np.testing.assert_array_equal(request.get_input_by_name("sequences").as_numpy(), x)
    np.testing.assert_array_equal(request.get_input_by_name("mask").as_numpy(), mask)


def test_raw_inputs_pair_with_the_first_inputs_by_position() -> None:
    """KServe hands ``raw_inputs[i]`` to ``inputs[i]``: a binary tensor after an inline one
    must still reach its own input."""
    x, mask = random_batch(2, 4, 5)
    header = {"inputs": [
        {"name": "mask", "datatype": "BOOL", "shape": [2, 4], "data": mask.reshape(-1).tolist()},
        {"name": "sequences", "datatype": "FP32", "shape": [2, 4, 5],
         "parameters": {"binary_data_size": x.nbytes}}]}
    text = json.dumps(header).encode()
    request = parse_v2_body(text + x.tobytes(),
                            {protocol.HEADER_CONTENT_LENGTH.lower(): str(len(text))}, "m")
    got_x, got_mask = decode_v2(request, 4, 5, 8)
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_mask, mask)


@given(st.lists(st.one_of(st.text(), st.binary()), max_size=40))
def test_strings_serialize_as_kserve_serializes_them(values: list) -> None:
    """`serialize_strings` is KServe's BYTES encoding, byte for byte: text of any script,
    empty strings, raw bytes, repeats (the cache)."""
    tensor = np.empty(len(values), dtype=object)
    tensor[:] = values
    expected = serialize_byte_tensor(tensor).item() if values else b""
    assert serialize_strings(values) == expected
    assert serialize_strings(values) == expected  # from the cache the second time


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("requested", [None, ["reason_codes", "fraud_probability"]])
def test_bytes_outputs_encode_as_kserve_outputs_do(binary: bool, requested: list | None) -> None:
    """A response with `BytesOutput` encodes to what KServe's own `InferOutput` gives, in the
    binary extension and in JSON, with and without requested outputs."""
    rows = 5
    codes = np.array(["amount_log,hour_sin", "", "déjà,vu", "amount_log,hour_sin", "x"],
                      dtype=object)
    probability = np.linspace(0, 1, rows, dtype=np.float32)

    def response(cls: type) -> tuple:
        outputs = [InferOutput("fraud_probability", [rows], "FP32", probability.copy()),
                   cls("reason_codes", [rows], "BYTES", codes.copy())]
        wanted = None if requested is None else [
            RequestedOutput(name, {"binary_data": binary}) for name in requested]
        return InferResponse("id-1", "m", outputs, use_binary_outputs=binary,
                             requested_outputs=wanted).to_rest()

    ours, theirs = response(BytesOutput), response(InferOutput)
    assert ours == theirs
    assert isinstance(ours[0], bytes) == binary


def test_kserve_own_decoder_still_turns_binary_tensors_into_lists() -> None:
    """Why the shim exists. When this fails, KServe's `InferRequest.from_bytes` keeps binary
    tensors as bytes: measure it, and drop our framing if it is as fast."""
    body, headers = _binary_request(2, 4, 5)
    request = InferRequest.from_bytes(body, int(headers[protocol.HEADER_CONTENT_LENGTH.lower()]),
                                      "m")
    assert all(isinstance(item.data, list) for item in request.inputs)


def test_model_server_serves_the_module_level_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """`install_routes` extends `kserve.model_server.app`: it must be the app the REST server
    imports (`RESTServer.create_application`)."""
    from uvicorn.importer import import_from_string

    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # kserve.model_server parses argv on import
    import kserve.model_server

    assert import_from_string(FASTAPI_APP_IMPORT_STRING) is kserve.model_server.app


@pytest.fixture
def app_client(tiny_models: ModelDirs) -> Iterator[tuple[TestClient, FraudPredictor]]:
    """The REST app as `ModelServer.start` builds it, in process, serving the tiny models."""
    def loader() -> ServedModel:
        return ServedModel.build(load_scorer(str(tiny_models.sequence),
                                             str(tiny_models.autoencoder), device="cpu"))

    predictor = FraudPredictor("fraud-scorer", loader, PredictorMetrics(CollectorRegistry()))
    predictor.load()
    repository = ModelRepository()
    repository.update(predictor)
    dataplane = DataPlane(repository)
    app = FastAPI(default_response_class=ORJSONResponse)
    install_routes(app, dataplane, predictor)  # before KServe's, as in serving.server.run
    register_v2_endpoints(app, dataplane, None)
    app.add_exception_handler(InvalidInput, invalid_input_handler)
    app.add_exception_handler(Exception, generic_exception_handler)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, predictor
    predictor.stop()


def _stage_counts(name: str) -> list[float]:
    return [REGISTRY.get_sample_value(f"request_{stage}_seconds_count", {"model_name": name})
            or 0.0 for stage in ("preprocess", "predict", "postprocess")]


def test_our_infer_route_comes_before_kserve_and_stages_are_timed(
        app_client: tuple[TestClient, FraudPredictor], tiny_models: ModelDirs) -> None:
    """Starlette serves the first matching route (ours), and KServe's model call times each
    stage in its own histograms."""
    client, predictor = app_client
    before = _stage_counts(predictor.name)
    body, headers = _binary_request(3, tiny_models.seq_len, tiny_models.dim)
    response = client.post(protocol.infer_path(), content=body, headers=headers)
    assert response.status_code == 200, response.text
    batch = protocol.decode_response(response.content, response.headers)
    assert len(batch) == 3 and set(batch.decision) <= set(DECISIONS)
    assert _stage_counts(predictor.name) == [c + 1 for c in before]
    # KServe's own handler answers a binary body without 'inputs' with 500 (KeyError).
    text = b'{"id": "x"}'
    response = client.post(protocol.infer_path(), content=text, headers={
        protocol.HEADER_CONTENT_LENGTH: str(len(text)), "content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert "'inputs' list" in response.json()["error"]


def test_metadata_route_keeps_the_parameters(app_client: tuple[TestClient, FraudPredictor]
                                              ) -> None:
    client, _ = app_client
    doc = client.get(protocol.metadata_path()).json()
    assert doc["parameters"][protocol.PARAM_SPEC_FINGERPRINT]
    assert [item["name"] for item in doc["inputs"]] == [protocol.INPUT_SEQUENCES,
                                                        protocol.INPUT_MASK]
