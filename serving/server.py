"""Run the predictor under `kserve.ModelServer`, with four adjustments to KServe 0.21's REST app.

1. ``POST /v2/models/{name}/infer`` is decoded here, then run through KServe's data plane
   (`DataPlane.infer` and `DataPlane.encode`, as KServe's own handler does). KServe's decoder
   turns binary tensors into Python lists (`InferRequest.from_bytes` ->
   `set_data_from_numpy(binary_data=False)`), which makes the binary extension slower than
   JSON, and answers some malformed bodies with 500 (a missing ``inputs`` key is a KeyError).
   Ours keeps binary tensors as bytes (read later with `np.frombuffer`) and refuses every
   malformed body with a precise 400.
2. ``GET /v2/models/fraud-scorer`` adds ``parameters`` (feature-spec version and fingerprint,
   served versions) to the standard metadata, which KServe's response model would drop.
3. FastAPI's request-validation errors answer 400 (like every other malformed input), not 422.
4. With request logging off (the default), KServe's timing middleware is left out (see
   `_skip_timing_middleware`).

The routes are added to KServe's module-level app before `ModelServer.start` registers its own,
so they take precedence for the paths they share.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from timing_asgi import TimingMiddleware

from fraudops import protocol
from fraudops.models import FeatureSpecMismatchError, load_scorer
from serving.exceptions import ConfigurationError, IncompatibleModelError
from serving.metrics import PredictorMetrics
from serving.predictor import FraudPredictor, ServedModel
from serving.settings import PredictorServiceSettings, PredictorSettings, parse_alias_uri

log = logging.getLogger(__name__)


def load_served(sequence_uri: str, autoencoder_uri: str, settings: PredictorSettings
                ) -> ServedModel:
    """Load both models (MLflow URI or local directory) and prepare them for serving."""
    check_device(settings.device)
    try:
        scorer = load_scorer(sequence_uri, autoencoder_uri, device=settings.device)
    except FeatureSpecMismatchError as error:
        raise IncompatibleModelError(str(error)) from error
    return ServedModel.build(scorer, reason_codes=settings.reason_codes,
                             reason_min_z=settings.reason_min_z)


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any model is downloaded."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} requested but CUDA is not available here "
                                 "(use 'auto' to fall back to the CPU)")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigurationError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def parse_v2_body(body: bytes, headers: Mapping[str, str], model_name: str) -> InferRequest:
    """A V2 request (JSON, or JSON header + binary tensors) as a KServe `InferRequest`.

    One parser for both encodings (orjson, no pydantic pass over the tensor data): with the
    binary extension the JSON header ends where `Inference-Header-Content-Length` says and the
    raw tensors follow in input order.
    """
    length = headers.get(protocol.HEADER_CONTENT_LENGTH.lower())
    split = len(body) if length is None else _header_length(length, len(body))
    try:
        doc = orjson.loads(body[:split])
    except orjson.JSONDecodeError as error:
        hint = ""
        if any(token in body[:split] for token in (b"NaN", b"Infinity")):
            hint = " (NaN and Infinity are not JSON numbers, and not valid inputs either)"
        raise InvalidInput(f"request is not valid JSON: {error}{hint}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput("V2 request must be an object with an 'inputs' list")
    inputs, offset = [], split
    for item in doc["inputs"]:
        infer_input, offset = _input(item, body, offset)
        inputs.append(infer_input)
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes after the declared binary tensors")
    request_id, parameters = doc.get("id"), doc.get("parameters")
    return InferRequest(model_name, inputs, request_id=str(request_id) if request_id else None,
                        parameters=parameters if isinstance(parameters, dict) else None,
                        request_outputs=_requested_outputs(doc.get("outputs")))


def _header_length(length: str, body_length: int) -> int:
    if not length.isdigit() or int(length) > body_length:
        raise InvalidInput(f"{protocol.HEADER_CONTENT_LENGTH} must be the JSON header's byte "
                           f"length (at most {body_length}), got {length!r}")
    return int(length)


def _requested_outputs(outputs: Any) -> list[RequestedOutput] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise InvalidInput("'outputs' must be a list of objects with a 'name'")
    return [RequestedOutput(o["name"], o.get("parameters") or {}) for o in outputs]


def _input(item: Any, body: bytes, offset: int) -> tuple[InferInput, int]:
    if not isinstance(item, dict) or not {"name", "shape", "datatype"} <= item.keys():
        raise InvalidInput("each input needs 'name', 'shape' and 'datatype'")
    params = item.get("parameters") or {}
    infer_input = InferInput(str(item["name"]), item["shape"], str(item["datatype"]),
                             parameters=params)
    if "data" in item:
        infer_input.data = item["data"]
        return infer_input, offset
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if not isinstance(size, int) or size < 0 or offset + size > len(body):
        raise InvalidInput(f"input '{item['name']}' needs 'data' or a 'binary_data_size' within "
                           f"the body ({len(body) - offset} bytes left)")
    infer_input._raw_data = body[offset:offset + size]
    return infer_input, offset + size


def install_routes(app: FastAPI, dataplane: DataPlane, predictor: FraudPredictor) -> None:
    """Add the fast V2 infer route, the extended metadata and 400-on-validation-error to `app`."""
    endpoints = V2Endpoints(dataplane)

    async def infer(raw_request: Request) -> Response:
        # KServe's V2 handler minus FastAPI's dependency solving and the pydantic re-validation
        # of the response: decode, run the model through the data plane, encode.
        model_name = raw_request.path_params["model_name"]
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        request = parse_v2_body(await raw_request.body(), raw_request.headers, model_name)
        headers = dict(raw_request.headers)
        result, result_headers = await dataplane.infer(model_name, request, headers)
        body, encode_headers = dataplane.encode(model_name, result, headers, {})
        out = {k: v for k, v in {**result_headers, **encode_headers}.items()
               if k.lower() not in ("content-length", "content-type")}
        if isinstance(body, bytes):
            return Response(body, headers=out, media_type="application/octet-stream")
        return ORJSONResponse(body, headers=out)

    async def metadata(model_name: str) -> Any:
        if model_name != predictor.name:
            return await endpoints.model_metadata(model_name)
        if not predictor.ready:
            raise ModelNotReady(model_name)
        return predictor.metadata()

    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": f"invalid request: {error}"})

    app.add_route("/v2/models/{model_name}/infer", infer, methods=["POST"],
                  include_in_schema=False)
    app.add_api_route("/v2/models/{model_name}", metadata, methods=["GET"], tags=["V2"])
    app.add_exception_handler(RequestValidationError, validation_error)


def run(settings: PredictorServiceSettings) -> None:
    """Load the models, start the champion watcher and serve until stopped."""
    import mlflow
    import torch
    from kserve import ModelServer
    from kserve.model_server import app

    p = settings.predictor
    tracking_uri = settings.mlflow.resolved_tracking_uri(settings.home)
    # Both: `models:/` URIs resolve through the registry URI, which MLflow otherwise takes from
    # an inherited MLFLOW_REGISTRY_URI (mlflow.set_registry_uri exports it to child processes).
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if p.torch_threads:
        torch.set_num_threads(p.torch_threads)
    metrics = PredictorMetrics()
    loader = functools.partial(load_served, settings=p)
    predictor = FraudPredictor(
        p.model_name, functools.partial(loader, p.sequence_model_uri, p.autoencoder_model_uri),
        metrics, max_request_batch=p.max_request_batch, max_merged_batch=p.max_merged_batch)
    predictor.load()
    server = ModelServer(http_port=p.http_port, grpc_port=p.grpc_port,
                         enable_grpc=p.enable_grpc, workers=1,
                         enable_latency_logging=p.request_logging)
    if not p.request_logging:  # after ModelServer(), which configures KServe's logging
        for name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _skip_timing_middleware(app)
    install_routes(app, server.dataplane, predictor)
    watcher = _start_watcher(predictor, p, loader, tracking_uri, metrics)
    try:
        server.start([predictor])
    finally:
        if watcher is not None:
            watcher.stop()


def _skip_timing_middleware(app: FastAPI) -> None:
    """Keep KServe from adding its timing middleware, whose only output is the trace log.

    It calls getrusage() twice per request (a sum over all threads: torch's, the executor's)
    just to log CPU time; with request logging off that is pure overhead, and the Prometheus
    histograms measure latency anyway. `RESTServer.create_application` adds it during
    `ModelServer.start`, so the app's `add_middleware` filters it out.
    """
    add_middleware = app.add_middleware

    def add_except_timing(middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        if middleware_class is not TimingMiddleware:
            add_middleware(middleware_class, *args, **kwargs)

    app.add_middleware = add_except_timing  # type: ignore[method-assign]


def _start_watcher(predictor: FraudPredictor, p: PredictorSettings, loader: Any,
                   tracking_uri: str, metrics: PredictorMetrics) -> Any:
    watched = parse_alias_uri(p.sequence_model_uri) and parse_alias_uri(p.autoencoder_model_uri)
    if p.poll_interval_s <= 0 or not watched:
        log.info("champion watching off (interval %s s, URIs %s, %s)", p.poll_interval_s,
                 p.sequence_model_uri, p.autoencoder_model_uri)
        return None
    from serving.watcher import ChampionWatcher

    watcher = ChampionWatcher(predictor, p.sequence_model_uri, p.autoencoder_model_uri, loader,
                              tracking_uri=tracking_uri, interval_s=p.poll_interval_s,
                              metrics=metrics)
    watcher.start()
    log.info("watching %s and %s every %s s", p.sequence_model_uri, p.autoencoder_model_uri,
             p.poll_interval_s)
    return watcher
