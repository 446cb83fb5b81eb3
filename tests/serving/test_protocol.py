"""The shared V2 codec interoperates with KServe's own request/response types."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from fraudops import protocol


def _batch(b: int = 3, k: int = 4, f: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, k, f)).astype(np.float32)
    mask = np.ones((b, k), dtype=bool)
    mask[0, :2] = False
    return x, mask


def _kserve_request(body: bytes, headers: dict[str, str]) -> InferRequest:
    if protocol.HEADER_CONTENT_LENGTH in headers:
        return InferRequest.from_bytes(body, int(headers[protocol.HEADER_CONTENT_LENGTH]), "m")
    return InferRequest.from_inference_request(InferenceRequest.model_validate_json(body), "m")


@pytest.mark.parametrize("binary", [True, False])
def test_request_decodes_in_kserve(binary: bool) -> None:
    x, mask = _batch()
    body, headers = protocol.encode_request(x, mask, binary=binary, request_id="r1")
    request = _kserve_request(body, headers)
    assert request.id == "r1"
    seq = request.get_input_by_name(protocol.INPUT_SEQUENCES).as_numpy()
    got_mask = request.get_input_by_name(protocol.INPUT_MASK).as_numpy()
    np.testing.assert_array_equal(seq.reshape(x.shape), x)
    np.testing.assert_array_equal(got_mask.reshape(mask.shape), mask)
    assert request.use_binary_outputs is binary


def test_request_parts_are_the_body_without_copying_the_tensors() -> None:
    """The consumer sends the binary request as parts: together they are `encode_request`'s
    body, the tensors are views of the caller's arrays, the length header counts them all."""
    x, mask = _batch()
    parts, headers = protocol.encode_request_parts(x, mask, request_id="r2")
    body, body_headers = protocol.encode_request(x, mask, request_id="r2")
    assert b"".join(parts) == body
    assert int(headers["content-length"]) == len(body) == sum(len(p) for p in parts)
    assert {k: v for k, v in headers.items() if k != "content-length"} == body_headers
    assert np.shares_memory(np.frombuffer(parts[1], dtype=np.float32), x)
    assert np.shares_memory(np.frombuffer(parts[2], dtype=bool), mask)
    # A strided or float64 batch is made contiguous float32 first (the parts own a copy).
    parts, _ = protocol.encode_request_parts(x.astype(np.float64)[::-1], mask[::-1],
                                             request_id="r2")
    request = _kserve_request(b"".join(parts), headers)
    np.testing.assert_array_equal(
        request.get_input_by_name(protocol.INPUT_SEQUENCES).as_numpy(), x[::-1])


@pytest.mark.parametrize("binary", [True, False])
def test_response_from_kserve_decodes(binary: bool) -> None:
    outputs = [
        InferOutput(protocol.OUTPUT_FRAUD_PROBABILITY, [2], "FP32"),
        InferOutput(protocol.OUTPUT_ANOMALY_SCORE, [2], "FP32"),
        InferOutput(protocol.OUTPUT_DECISION, [2], "BYTES"),
        InferOutput(protocol.OUTPUT_REASON_CODES, [2], "BYTES"),
    ]
    outputs[0].set_data_from_numpy(np.array([0.1, 0.9], np.float32), binary_data=binary)
    outputs[1].set_data_from_numpy(np.array([1.5, 7.0], np.float32), binary_data=binary)
    outputs[2].set_data_from_numpy(np.array(["approve", "block"], dtype=object), binary_data=binary)
    outputs[3].set_data_from_numpy(np.array(["", "amount,hour_sin"], dtype=object),
                                   binary_data=binary)
    response = InferResponse("r1", "m", outputs, model_version="v3", use_binary_outputs=binary)
    body, json_size = response.to_rest()
    headers = {}
    if json_size is not None:
        headers[protocol.HEADER_CONTENT_LENGTH.lower()] = str(json_size)
    else:
        body = json.dumps(body).encode()
    batch = protocol.decode_response(body, headers)
    np.testing.assert_allclose(batch.fraud_probability, [0.1, 0.9])
    np.testing.assert_allclose(batch.anomaly_score, [1.5, 7.0])
    assert batch.decision == ["approve", "block"]
    assert batch.reason_codes == [(), ("amount", "hour_sin")]
    assert batch.request_id == "r1" and batch.model_version == "v3" and len(batch) == 2


def test_encode_rejects_mismatched_shapes() -> None:
    x, mask = _batch()
    with pytest.raises(protocol.ProtocolError, match="mask"):
        protocol.encode_request(x, mask[:, :2])


def test_decode_rejects_missing_outputs() -> None:
    body = json.dumps({"id": "1", "outputs": []}).encode()
    with pytest.raises(protocol.ProtocolError, match="fraud_probability"):
        protocol.decode_response(body, {})


def test_bytes_roundtrip_and_truncation() -> None:
    items = ["approve", "", "ünïcode"]
    assert protocol.unpack_bytes(protocol.pack_bytes(items)) == items
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack_bytes(protocol.pack_bytes(items)[:-1])


def test_model_info_compatibility() -> None:
    doc = {"name": protocol.MODEL_NAME, "inputs": [
        {"name": "sequences", "datatype": "FP32", "shape": [-1, 16, 40]},
        {"name": "mask", "datatype": "BOOL", "shape": [-1, 16]}],
        "parameters": {protocol.PARAM_SPEC_VERSION: "1", protocol.PARAM_SPEC_FINGERPRINT: "abc"}}
    info = protocol.ModelInfo.from_metadata(doc)
    assert (info.seq_len, info.n_features) == (16, 40)
    info.check_compatible(n_features=40, spec_fingerprint="abc", spec_version="1")
    with pytest.raises(protocol.ProtocolError, match="fingerprint"):
        info.check_compatible(n_features=40, spec_fingerprint="zzz")
    with pytest.raises(protocol.ProtocolError, match="feature count"):
        info.check_compatible(n_features=41)
