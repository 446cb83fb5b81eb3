"""Predictor building blocks without a server: reason codes, micro-batching, input checks."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from typing import Any

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse
from prometheus_client import CollectorRegistry
from serving_helpers import ModelDirs, random_batch

from fraudops import protocol
from fraudops.models import load_scorer
from serving.batching import MicroBatcher
from serving.exceptions import ConfigurationError
from serving.kserve_compat import parse_v2_body
from serving.metrics import PredictorMetrics
from serving.predictor import FraudPredictor, ServedModel
from serving.reasons import ReasonCoder
from serving.server import check_device, event_loop_policy, load_served
from serving.settings import PredictorSettings
from serving.validation import check_arrays, decode_v1


def _coder() -> ReasonCoder:
    names = ("amount", "hour", "velocity", "new_device")
    return ReasonCoder(names, mean=np.zeros(4, np.float32), std=np.ones(4, np.float32),
                       weight=np.array([1.0, 0.25, 0.5, 1.0], np.float32), top_k=2, min_z=2.0)


def test_reasons_name_the_deviating_features_by_weighted_deviation() -> None:
    current = np.array([[0.1, 0.2, -0.3, 0.0],     # ordinary: no reasons
                        [5.0, 0.0, 0.0, 0.0],      # one outlier
                        [3.0, 9.0, -7.0, 2.5]],    # weighted: velocity 3.5, amount 3, hour 2.25
                       np.float32)
    assert _coder().explain(current) == ["", "amount", "velocity,amount"]


def test_reasons_off_when_top_k_zero() -> None:
    coder = ReasonCoder(("a",), np.zeros(1), np.ones(1), np.ones(1), top_k=0)
    assert coder.explain(np.array([[9.0]])) == [""]


def test_micro_batcher_merges_concurrent_requests_and_splits_results() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def score(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        gate.wait(5)  # hold the first pass so the others queue up behind it
        calls.append(len(x))
        return x[:, 0, 0] * 2

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(score, max_rows=100)
        requests = [np.full((n, 1, 1), float(n), np.float32) for n in (1, 2, 3, 4)]
        tasks = []
        for x in requests:
            tasks.append(asyncio.create_task(batcher.submit(x, np.ones((len(x), 1), bool))))
            await asyncio.sleep(0.02)  # the first pass starts before the others arrive
        gate.set()
        results = await asyncio.gather(*tasks)
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[2.0], [4.0, 4.0], [6.0] * 3, [8.0] * 4]
    assert calls == [1, 9]  # the first alone, the three queued ones merged into one pass


def test_micro_batcher_hands_errors_to_every_request_of_the_pass() -> None:
    def score(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    async def main() -> None:
        batcher = MicroBatcher(score, max_rows=10)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.zeros((1, 1, 1), np.float32), np.ones((1, 1), bool))
        batcher.close()

    asyncio.run(main())


def test_micro_batcher_scores_a_lone_small_request_on_the_event_loop() -> None:
    passes: list[tuple[int, bool]] = []  # rows, on the event loop's thread
    gate = threading.Event()
    loop_thread = threading.current_thread()

    def score(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        passes.append((len(x), threading.current_thread() is loop_thread))
        if len(x) > 2:
            gate.wait(5)  # a large pass holds the scoring thread
        return x[:, 0, 0] + 1

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(score, max_rows=100, inline=lambda rows: rows <= 2)
        mask = np.ones((1, 1), bool)

        def submit(value: float, rows: int = 1) -> asyncio.Task:
            return asyncio.create_task(batcher.submit(
                np.full((rows, 1, 1), value, np.float32), np.ones((rows, 1), bool)))

        alone = await batcher.submit(np.ones((1, 1, 1), np.float32), mask)
        large = submit(1.0, rows=5)
        await asyncio.sleep(0.05)  # the large pass is running on the scoring thread
        queued = [submit(2.0), submit(3.0)]  # merged into one pass of 2 rows behind it
        await asyncio.sleep(0.05)
        gate.set()
        results = [alone, *await asyncio.gather(large, *queued)]
        results.append(await batcher.submit(np.full((2, 1, 1), 4.0, np.float32),
                                            np.ones((2, 1), bool)))  # alone again
        batcher.close()
        return results

    results = asyncio.run(main())
    assert [r.tolist() for r in results] == [[2.0], [2.0] * 5, [3.0], [4.0], [5.0, 5.0]]
    # Requests that overlapped (merged) go to the thread, where their pass runs while the loop
    # reads the next ones; a request alone is scored on the loop.
    assert passes == [(1, True), (5, False), (2, False), (2, True)]


@pytest.mark.parametrize(("x_shape", "mask_shape", "message"), [
    ((2, 4, 3), (2, 4), r"shape \[B, 8, 3\]"),
    ((2, 8, 3), (2, 7), r"'mask' must have shape \[2, 8\]"),
    ((0, 8, 3), (0, 8), "batch size"),
    ((9, 8, 3), (9, 8), "batch size"),
])
def test_check_arrays_refuses_bad_shapes(x_shape: tuple, mask_shape: tuple, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_arrays(np.zeros(x_shape, np.float32), np.ones(mask_shape, bool), 8, 3, 8)


def test_check_arrays_refuses_nan_and_masked_current_row() -> None:
    x, mask = np.zeros((3, 8, 3), np.float32), np.ones((3, 8), bool)
    x[1, 2, 0] = np.inf
    with pytest.raises(InvalidInput, match=r"NaN or infinite values \(rows \[1\]\)"):
        check_arrays(x, mask, 8, 3, 8)
    x[1, 2, 0] = 0
    mask[2, -1] = False
    with pytest.raises(InvalidInput, match=r"rows \[2\]"):
        check_arrays(x, mask, 8, 3, 8)


def test_decode_v1_defaults_mask_and_refuses_non_numbers() -> None:
    x, mask = decode_v1({"instances": [{"sequences": [[0.0] * 3] * 8}]}, 8, 3, 8)
    assert x.shape == (1, 8, 3) and mask.all()
    with pytest.raises(InvalidInput, match="numeric"):
        decode_v1({"instances": [{"sequences": [["a"] * 3] * 8}]}, 8, 3, 8)
    with pytest.raises(InvalidInput, match="instances"):
        decode_v1({"inputs": []}, 8, 3, 8)


def test_predictor_loads_once_and_swaps_atomically(tiny_models: ModelDirs) -> None:
    loads = []

    def loader() -> ServedModel:
        loads.append(1)
        return ServedModel.build(load_scorer(str(tiny_models.sequence),
                                             str(tiny_models.autoencoder), device="cpu"))

    predictor = FraudPredictor("fraud-scorer", loader, PredictorMetrics(CollectorRegistry()))
    assert not predictor.ready
    predictor.load()
    predictor.load()
    assert predictor.ready and loads == [1]
    first = predictor.served
    predictor.swap(loader())
    assert predictor.served is not first
    x, mask = random_batch(4, tiny_models.seq_len, tiny_models.dim)
    scores = predictor._forward(x, mask)
    assert scores.served is predictor.served and len(scores.reason_codes) == 4
    predictor.stop()


def test_device_checked_before_loading() -> None:
    import torch

    check_device("auto")
    check_device("cpu")
    with pytest.raises(ConfigurationError, match="unknown device"):
        check_device("tpu")
    if not torch.cuda.is_available():  # this check needs a machine without a GPU
        with pytest.raises(ConfigurationError, match="CUDA is not available"):
            check_device("cuda:0")


def _loaded_predictor(tiny_models: ModelDirs) -> tuple[FraudPredictor, CollectorRegistry]:
    registry = CollectorRegistry()
    predictor = FraudPredictor("fraud-scorer", lambda: ServedModel.build(load_scorer(
        str(tiny_models.sequence), str(tiny_models.autoencoder), device="cpu")),
        PredictorMetrics(registry), max_request_batch=16)
    predictor.load()
    return predictor, registry


def _call(predictor: FraudPredictor, payload: dict | InferRequest) -> dict | InferResponse:
    async def stages() -> dict | InferResponse:  # KServe's Model.__call__, stage by stage
        decoded = await predictor.preprocess(payload)
        assert predictor.validate(decoded) is decoded
        return await predictor.postprocess(await predictor.predict(decoded))

    return asyncio.run(stages())


def test_stages_decode_score_and_answer_requested_outputs(tiny_models: ModelDirs) -> None:
    predictor, _ = _loaded_predictor(tiny_models)
    x, mask = random_batch(3, tiny_models.seq_len, tiny_models.dim)
    body, headers = protocol.encode_request(x, mask, binary=True, request_id="r-7")
    request = parse_v2_body(body, {k.lower(): v for k, v in headers.items()}, predictor.name)
    decoded = asyncio.run(predictor.preprocess(request))
    np.testing.assert_array_equal(decoded.x, x)
    np.testing.assert_array_equal(decoded.mask, mask)
    response = _call(predictor, request)
    assert isinstance(response, InferResponse) and response.id == "r-7"
    expected = predictor.served.score(x, mask)
    np.testing.assert_array_equal(
        response.get_output_by_name(protocol.OUTPUT_FRAUD_PROBABILITY).as_numpy(),
        expected.fraud_probability)
    v1 = _call(predictor, {"instances": [{"sequences": x[0].tolist(), "mask": mask[0].tolist()}]})
    assert v1["predictions"][0]["decision"] == expected.decision[0]
    predictor.stop()


def _binary_v2(x: np.ndarray, mask: np.ndarray, change: Any) -> InferRequest:
    """A binary V2 request whose JSON header `change` edits (tensors cut to the declared size)."""
    tensors = [x.tobytes(), mask.tobytes()]
    doc = {"inputs": [
        {"name": "sequences", "datatype": "FP32", "shape": list(x.shape),
         "parameters": {"binary_data_size": len(tensors[0])}},
        {"name": "mask", "datatype": "BOOL", "shape": list(mask.shape),
         "parameters": {"binary_data_size": len(tensors[1])}}]}
    change(doc)
    raw = b"".join(t[:item["parameters"]["binary_data_size"]]
                   for t, item in zip(tensors, doc["inputs"], strict=True))
    text = json.dumps(doc).encode()
    return parse_v2_body(text + raw, {"inference-header-content-length": str(len(text))},
                         "fraud-scorer")


def _declare(index: int, **fields: Any) -> Any:
    def change(doc: dict) -> None:
        item = doc["inputs"][index]
        item["parameters"].update(fields.pop("parameters", {}))
        item.update(fields)
    return change


@pytest.mark.parametrize(("change", "message"), [
    (_declare(0, datatype="FP64"), "must have datatype FP32, got FP64"),
    (_declare(1, shape=[1, 3], parameters={"binary_data_size": 3}),
     r"'mask' must have shape \[1, 8\]"),
    (_declare(0, parameters={"binary_data_size": 8}), "has 8 bytes of data"),
    (lambda doc: doc.update(outputs=[{"name": "score"}]), r"unknown output\(s\) \['score'\]"),
])
def test_preprocess_refuses_malformed_requests_with_a_message(
        tiny_models: ModelDirs, change: Any, message: str) -> None:
    predictor, registry = _loaded_predictor(tiny_models)
    request = _binary_v2(*random_batch(1, tiny_models.seq_len, tiny_models.dim), change)
    with pytest.raises(InvalidInput, match=message):
        asyncio.run(predictor.preprocess(request))
    assert registry.get_sample_value("fraud_predictor_invalid_requests_total") == 1
    predictor.stop()


@pytest.mark.parametrize(("precision", "dtype", "blocks"),
                         [("float64", "float64", None), ("float32", "float32", 48)])
def test_precision_setting_reaches_the_scorer(tiny_models: ModelDirs, precision: str,
                                              dtype: str, blocks: int | None) -> None:
    settings = PredictorSettings(device="cpu", precision=precision, block_rows=48,
                                 backend="torch")
    served = load_served(str(tiny_models.sequence), str(tiny_models.autoencoder), settings)
    assert str(served.scorer.dtype) == f"torch.{dtype}"
    assert not served.quick  # torch: every request goes to the scoring thread
    assert served.scorer.block_rows == blocks
    assert next(served.scorer.models.parameters()).dtype == served.scorer.dtype


def test_onnxruntime_backend_setting_reaches_the_scorer(tiny_models: ModelDirs) -> None:
    settings = PredictorSettings(device="auto", backend="onnxruntime", block_rows=48)
    served = load_served(str(tiny_models.sequence), str(tiny_models.autoencoder), settings)
    assert (served.scorer.backend, served.scorer.block_rows) == ("onnxruntime", 48)
    assert served.quick  # one unpadded pass: small requests may be scored inline
    assert served.scorer.device.type == "cpu"
    x = np.zeros((3, served.seq_len, served.scorer.feature_dim), dtype=np.float32)
    assert served.scorer.score(x, np.ones(x.shape[:2], dtype=bool)).fraud_probability.shape == (3,)


@pytest.mark.parametrize(("settings", "backend"),
                         [({}, "onnxruntime"), ({"device": "cpu"}, "onnxruntime"),
                          ({"precision": "float64"}, "torch")])
def test_auto_backend_is_onnxruntime_for_float32_on_the_cpu(tiny_models: ModelDirs,
                                                            settings: dict, backend: str) -> None:
    served = load_served(str(tiny_models.sequence), str(tiny_models.autoencoder),
                         PredictorSettings(**settings))
    assert PredictorSettings().backend == "auto"
    assert served.scorer.backend == backend


def test_auto_backend_falls_back_to_torch_when_onnxruntime_cannot_run(
        tiny_models: ModelDirs, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from fraudops.models import BackendUnavailableError, onnx_graph

    def no_runtime(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(onnx_graph, "session", no_runtime)
    with caplog.at_level(logging.WARNING, logger="serving.server"):
        served = load_served(str(tiny_models.sequence), str(tiny_models.autoencoder),
                             PredictorSettings())
    assert served.scorer.backend == "torch"
    assert "serving them with torch" in caplog.text
    with pytest.raises(BackendUnavailableError, match="onnxruntime package"):
        load_served(str(tiny_models.sequence), str(tiny_models.autoencoder),
                    PredictorSettings(backend="onnxruntime"))


@pytest.mark.parametrize("settings", [{"precision": "float64"}, {"device": "cuda"}])
def test_onnxruntime_backend_refuses_float64_and_gpus(tiny_models: ModelDirs,
                                                      settings: dict) -> None:
    with pytest.raises(ConfigurationError, match="onnxruntime"):
        load_served(str(tiny_models.sequence), str(tiny_models.autoencoder),
                    PredictorSettings(backend="onnxruntime", **settings))


def _loop_of_asyncio_run() -> str:
    async def name() -> str:
        return type(asyncio.get_running_loop()).__module__
    return asyncio.run(name())


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"),
                                                 ("asyncio", "asyncio")])
def test_event_loop_setting_decides_the_loop_asyncio_run_serves_on(choice: str,
                                                                   module: str) -> None:
    # KServe's ModelServer.start serves in asyncio.run and asks for the current loop first
    before = asyncio.get_event_loop_policy()
    with event_loop_policy(choice) as chosen:
        assert chosen == module
        assert asyncio.get_event_loop_policy().get_event_loop() is not None
        assert _loop_of_asyncio_run().startswith(module)
    assert asyncio.get_event_loop_policy() is before
    assert _loop_of_asyncio_run().startswith("asyncio")


def test_event_loop_uvloop_refused_clearly_when_not_installed(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    with event_loop_policy("auto") as chosen:
        assert chosen == "asyncio"
    with pytest.raises(ConfigurationError, match="uvloop is not installed"), \
            event_loop_policy("uvloop"):
        pass
