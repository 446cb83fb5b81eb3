"""The real predictor process (kserve.ModelServer) over loopback HTTP: protocol, errors, metrics."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from serving_helpers import SERVE, ModelDirs, RunningService, random_batch, write_tiny_models

from fraudops import protocol
from fraudops.features import FEATURE_SPEC_VERSION, build_spec
from fraudops.models import load_scorer
from fraudops.schema import DECISIONS

pytestmark = pytest.mark.integration


def _infer(service: RunningService, x: np.ndarray, mask: np.ndarray, binary: bool
           ) -> protocol.ScoreBatch:
    body, headers = protocol.encode_request(x, mask, binary=binary, request_id="req-1")
    response = httpx.post(service.url + protocol.infer_path(), content=body, headers=headers)
    assert response.status_code == 200, response.text
    return protocol.decode_response(response.content, response.headers)


def test_metadata_describes_inputs_spec_and_versions(predictor: RunningService,
                                                     tiny_models: ModelDirs) -> None:
    doc = httpx.get(predictor.url + protocol.metadata_path()).json()
    info = protocol.ModelInfo.from_metadata(doc)
    assert (info.seq_len, info.n_features) == (tiny_models.seq_len, tiny_models.dim)
    spec = build_spec()
    info.check_compatible(n_features=spec.dim, spec_fingerprint=spec.fingerprint,
                          spec_version=FEATURE_SPEC_VERSION)
    assert info.sequence_model_version == "local"
    assert doc["parameters"][protocol.PARAM_FEATURE_NAMES].split(",") == list(spec.names)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert doc["parameters"][protocol.PARAM_DEVICE] == auto


@pytest.mark.parametrize("binary", [True, False])
def test_v2_batch_matches_the_scorer_in_process(predictor: RunningService, tiny_models: ModelDirs,
                                                binary: bool) -> None:
    x, mask = random_batch(32, tiny_models.seq_len, tiny_models.dim)
    batch = _infer(predictor, x, mask, binary)
    expected = load_scorer(str(tiny_models.sequence), str(tiny_models.autoencoder),
                           device="cpu").score(x, mask)
    assert batch.request_id == "req-1" and len(batch) == 32
    np.testing.assert_allclose(batch.fraud_probability, expected.fraud_probability, rtol=1e-5)
    np.testing.assert_allclose(batch.anomaly_score, expected.anomaly_score, rtol=1e-4, atol=1e-5)
    assert batch.decision == expected.decision.tolist()
    names = set(build_spec().names)
    assert all(set(codes) <= names and len(codes) <= 3 for codes in batch.reason_codes)
    assert any(batch.reason_codes), "random inputs far from the mean should yield reasons"


def test_binary_response_really_is_binary(predictor: RunningService, tiny_models: ModelDirs
                                          ) -> None:
    x, mask = random_batch(4, tiny_models.seq_len, tiny_models.dim)
    body, headers = protocol.encode_request(x, mask, binary=True)
    response = httpx.post(predictor.url + protocol.infer_path(), content=body, headers=headers)
    split = int(response.headers[protocol.HEADER_CONTENT_LENGTH])
    header = json.loads(response.content[:split])
    assert all("data" not in out for out in header["outputs"])
    assert len(response.content) > split


def test_v1_predict(predictor: RunningService, tiny_models: ModelDirs) -> None:
    x, mask = random_batch(3, tiny_models.seq_len, tiny_models.dim)
    instances = [{"sequences": x[i].tolist(), "mask": mask[i].tolist()} for i in range(3)]
    response = httpx.post(f"{predictor.url}/v1/models/{protocol.MODEL_NAME}:predict",
                          json={"instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    v2 = _infer(predictor, x, mask, binary=True)
    assert [p["decision"] for p in predictions] == v2.decision
    np.testing.assert_allclose([p["fraud_probability"] for p in predictions],
                               v2.fraud_probability, rtol=1e-5)


def _json_request(inputs: list[dict]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _seq(shape: list[int], datatype: str = "FP32", data: list | None = None) -> dict:
    size = int(np.prod(shape))
    return {"name": "sequences", "datatype": datatype, "shape": shape,
            "data": data if data is not None else [0.5] * size}


def _mask(shape: list[int], data: list | None = None) -> dict:
    return {"name": "mask", "datatype": "BOOL", "shape": shape,
            "data": data if data is not None else [True] * int(np.prod(shape))}


K, F = 8, build_spec().dim
BAD_JSON = {
    "not json": (b"{", "request is not valid JSON"),
    "no inputs": (b'{"id": "1"}', "an 'inputs' list"),
    "input without data": (json.dumps({"inputs": [{"name": "mask", "datatype": "BOOL",
                                                   "shape": [1, K]}]}).encode(),
                           "needs 'data'"),
    "outputs not a list": (json.dumps({"inputs": [], "outputs": 3}).encode(), "'outputs'"),
    "unknown output": (json.dumps({"inputs": [_seq([1, K, F]), _mask([1, K])],
                                   "outputs": [{"name": "nope"}]}).encode(), "nope"),
    "wrong sequence length": (_json_request([_seq([1, 4, F]), _mask([1, 4])]),
                              f"shape [B, {K}, {F}]"),
    "wrong dtype": (_json_request([_seq([1, K, F], "FP64"), _mask([1, K])]),
                    "must have datatype FP32, got FP64"),
    "NaN": (_json_request([_seq([1, K, F], data=[float("nan")] + [0.0] * (K * F - 1)),
                           _mask([1, K])]), "NaN and Infinity are not JSON numbers"),
    "missing mask": (_json_request([_seq([1, K, F])]), "missing input 'mask'"),
    "too few elements": (_json_request([_seq([1, K, F], data=[0.0] * 3), _mask([1, K])]),
                         "has 3 elements"),
    "strings": (_json_request([_seq([1, K, F], data=["x"] * (K * F)), _mask([1, K])]),
                "non-numeric"),
    "integer mask": (_json_request([_seq([1, K, F]), _mask([1, K], [1] * K)]),
                     "true/false"),
    "unknown input": (_json_request([_seq([1, K, F]), _mask([1, K]),
                                     {"name": "extra", "datatype": "FP32", "shape": [1],
                                      "data": [1.0]}]), "unknown input"),
    "batch too large": (_json_request([_seq([65, K, F]), _mask([65, K])]),
                        "batch size must be between 1 and 64"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_malformed_json_requests_get_400(predictor: RunningService, case: str) -> None:
    body, message = BAD_JSON[case]
    response = httpx.post(predictor.url + protocol.infer_path(), content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def _binary(header: dict, raw: bytes, declared: str | None = None) -> tuple[bytes, dict]:
    text = json.dumps(header).encode()
    return text + raw, {protocol.HEADER_CONTENT_LENGTH: declared or str(len(text)),
                        "content-type": "application/octet-stream"}


@pytest.mark.parametrize("case", ["short tensor", "bad header length", "trailing bytes",
                                  "no size", "header not json", "NaN"])
def test_malformed_binary_requests_get_400(predictor: RunningService, case: str) -> None:
    seq = np.zeros((1, K, F), np.float32).tobytes()
    mask = np.ones((1, K), bool).tobytes()
    inputs = [{"name": "sequences", "datatype": "FP32", "shape": [1, K, F],
               "parameters": {"binary_data_size": len(seq)}},
              {"name": "mask", "datatype": "BOOL", "shape": [1, K],
               "parameters": {"binary_data_size": len(mask)}}]
    body, headers = _binary({"inputs": inputs}, seq + mask)
    if case == "short tensor":
        inputs[0]["parameters"]["binary_data_size"] = len(seq) - 4
        body, headers = _binary({"inputs": inputs}, seq[:-4] + mask)
    elif case == "bad header length":
        headers[protocol.HEADER_CONTENT_LENGTH] = "abc"
    elif case == "trailing bytes":
        body += b"xx"
    elif case == "no size":
        del inputs[1]["parameters"]
        body, headers = _binary({"inputs": inputs}, seq + mask)
    elif case == "header not json":
        body, headers = b"nope" + seq + mask, {protocol.HEADER_CONTENT_LENGTH: "4"}
    elif case == "NaN":
        x = np.zeros((1, K, F), np.float32)
        x[0, 3, 5] = np.nan
        body, headers = protocol.encode_request(x, np.ones((1, K), bool), binary=True)
    response = httpx.post(predictor.url + protocol.infer_path(), content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    if case == "NaN":
        assert "NaN or infinite values (rows [0])" in response.json()["error"]


def test_v1_malformed_gets_400(predictor: RunningService) -> None:
    url = f"{predictor.url}/v1/models/{protocol.MODEL_NAME}:predict"
    for body in (b"[1, 2]", b'{"instances": [{"sequences": [[1.0]]}]}', b"{broken"):
        response = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (body, response.text)


def test_metrics_count_decisions_batches_and_model_version(predictor: RunningService,
                                                           tiny_models: ModelDirs) -> None:
    def decisions_total(text: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("fraud_predictor_decisions_total{"))

    before = decisions_total(httpx.get(predictor.url + "/metrics").text)
    x, mask = random_batch(5, tiny_models.seq_len, tiny_models.dim)
    _infer(predictor, x, mask, binary=True)
    text = httpx.get(predictor.url + "/metrics").text
    assert decisions_total(text) == before + 5
    assert 'fraud_predictor_model_info{autoencoder_version="local"' in text
    assert "fraud_predictor_request_batch_size_bucket" in text
    assert "fraud_predictor_request_duration_seconds_bucket{" in text
    assert "request_predict_seconds" in text  # KServe's own histograms share the registry


def test_refuses_a_model_of_another_feature_spec_version(tmp_path: Path) -> None:
    dirs = write_tiny_models(tmp_path)
    meta_path = dirs.sequence / "fraudops_model.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_spec"]["version"] = meta["feature_spec_version"] = "0.0.1"
    meta_path.write_text(json.dumps(meta))
    env = {"FRAUDOPS_HOME": str(tmp_path / "home"),
           "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": str(dirs.sequence),
           "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": str(dirs.autoencoder),
           "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([*SERVE, "predictor", "--port", "1"], env=env, check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "feature-spec version '0.0.1'" in result.stderr
    assert FEATURE_SPEC_VERSION in result.stderr


def test_requested_outputs_subset(predictor: RunningService, tiny_models: ModelDirs) -> None:
    x, mask = random_batch(2, tiny_models.seq_len, tiny_models.dim)
    body = {"id": "sub", "inputs": [_seq(list(x.shape), data=x.reshape(-1).tolist()),
                                    _mask(list(mask.shape), data=mask.reshape(-1).tolist())],
            "outputs": [{"name": protocol.OUTPUT_DECISION}]}
    response = httpx.post(predictor.url + protocol.infer_path(), json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    assert [o["name"] for o in outputs] == [protocol.OUTPUT_DECISION]
    assert set(outputs[0]["data"]) <= set(DECISIONS)


def test_open_inference_protocol_over_grpc(predictor_factory, tiny_models: ModelDirs) -> None:
    """`ENABLE_GRPC=true`: KServe's gRPC V2 service answers as REST does, and refuses a
    malformed request with INVALID_ARGUMENT and a message."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    from fraudops.testing import free_port

    grpc_port = free_port()
    service = predictor_factory(str(tiny_models.sequence), str(tiny_models.autoencoder),
                                FRAUDOPS_PREDICTOR__ENABLE_GRPC="true",
                                FRAUDOPS_PREDICTOR__GRPC_PORT=str(grpc_port))
    x, mask = random_batch(5, tiny_models.seq_len, tiny_models.dim)

    def request(x: np.ndarray, mask: np.ndarray) -> pb.ModelInferRequest:
        tensor = pb.ModelInferRequest.InferInputTensor
        return pb.ModelInferRequest(
            model_name=protocol.MODEL_NAME, id="grpc-1",
            inputs=[tensor(name=protocol.INPUT_SEQUENCES, datatype="FP32", shape=list(x.shape)),
                    tensor(name=protocol.INPUT_MASK, datatype="BOOL", shape=list(mask.shape))],
            raw_input_contents=[x.tobytes(), mask.tobytes()])

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        answer = stub.ModelInfer(request(x, mask), timeout=30)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request(x[:, :, :-1].copy(), mask), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequences" in refused.value.details()

    outputs = {out.name: protocol.decode_binary(raw, out.datatype)
               for out, raw in zip(answer.outputs, answer.raw_output_contents, strict=True)}
    rest = _infer(service, x, mask, binary=True)
    assert answer.id == "grpc-1"
    np.testing.assert_array_equal(outputs[protocol.OUTPUT_FRAUD_PROBABILITY],
                                  rest.fraud_probability)
    np.testing.assert_array_equal(outputs[protocol.OUTPUT_ANOMALY_SCORE], rest.anomaly_score)
    assert list(outputs[protocol.OUTPUT_DECISION]) == rest.decision
    log = service.log_path.read_text()
    assert "Starting gRPC server" in log
    assert "grpc method" not in log, "a log line per call although request logging is off"
    assert "event loop: uvloop" in log  # REST and gRPC both served on uvloop (`event_loop`)
