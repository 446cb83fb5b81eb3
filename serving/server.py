"""Run the predictor under `kserve.ModelServer`: load the models, add the routes of
`serving.kserve_compat`, start the champion watcher, serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

from fraudops.models import BackendUnavailableError, load_scorer, pick_device
from serving.exceptions import ConfigurationError
from serving.kserve_compat import install_routes
from serving.metrics import PredictorMetrics
from serving.predictor import FraudPredictor, ServedModel
from serving.settings import PredictorServiceSettings, PredictorSettings, parse_alias_uri

log = logging.getLogger(__name__)


def load_served(sequence_uri: str, autoencoder_uri: str, settings: PredictorSettings
                ) -> ServedModel:
    """Load both models (MLflow URI or local directory) and prepare them for serving."""
    exact = settings.precision == "float64"
    if settings.backend == "onnxruntime" and (exact or settings.device.startswith("cuda")):
        raise ConfigurationError("backend onnxruntime runs float32 on the CPU: set precision "
                                 "float32 and device cpu (or auto), or use backend torch")
    check_device(settings.device)
    backend = resolve_backend(settings)
    load = functools.partial(load_scorer, sequence_uri, autoencoder_uri, exact=exact,
                             block_rows=None if exact else settings.block_rows,
                             threads=settings.torch_threads)
    if backend == "onnxruntime":
        try:
            scorer = load(device="cpu", backend="onnxruntime")
        except BackendUnavailableError as error:
            if settings.backend != "auto":
                raise
            log.warning("ONNX Runtime cannot serve these models (%s): serving them with torch",
                        error)
            scorer = load(device=settings.device, backend="torch")
    else:
        scorer = load(device=settings.device, backend="torch")
    log.info("scoring with %s (%s, %s)", scorer.backend, settings.precision, scorer.device)
    return ServedModel.build(scorer, reason_codes=settings.reason_codes,
                             reason_min_z=settings.reason_min_z)


def resolve_backend(settings: PredictorSettings) -> str:
    """What runs the forward passes: `settings.backend`, with ``auto`` read as ONNX Runtime
    for float32 on the CPU when the package is installed, torch otherwise (float64, a GPU)."""
    if settings.backend != "auto":
        return settings.backend
    if settings.precision != "float32" or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    return "onnxruntime" if pick_device(settings.device).type == "cpu" else "torch"


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before any model is downloaded."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} requested but CUDA is not available here "
                                 "(use 'auto' to fall back to the CPU)")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigurationError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


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
        metrics, max_request_batch=p.max_request_batch, max_merged_batch=p.max_merged_batch,
        inline_rows=p.inline_rows)
    predictor.load()
    server = ModelServer(http_port=p.http_port, grpc_port=p.grpc_port,
                         enable_grpc=p.enable_grpc, workers=1,
                         enable_latency_logging=p.request_logging)
    if not p.request_logging:  # after ModelServer(), which configures KServe's logging
        for name in ("kserve.trace", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger("kserve").addFilter(_no_grpc_call_lines)
    install_routes(app, server.dataplane, predictor)
    watcher = _start_watcher(predictor, p, loader, tracking_uri, metrics)
    try:
        with event_loop_policy(p.event_loop):  # `start` serves in `asyncio.run`
            server.start([predictor])
    finally:
        if watcher is not None:
            watcher.stop()


@contextlib.contextmanager
def event_loop_policy(choice: str) -> Iterator[str]:
    """Make ``asyncio.run`` create `choice`'s event loop (see `PredictorSettings.event_loop`);
    yields the loop's name. The previous policy comes back on exit."""
    previous = asyncio.get_event_loop_policy()
    chosen = "asyncio"
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigurationError("event_loop 'uvloop' requested but uvloop is not "
                                         "installed (pip install uvloop)") from None
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            chosen = "uvloop"
    # KServe asks for the current loop before `asyncio.run` (to set its exception handler):
    # neither uvloop's policy nor asyncio's after an earlier `asyncio.run` makes one then.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    log.info("event loop: %s", chosen)
    try:
        yield chosen
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        asyncio.set_event_loop_policy(previous)


def _no_grpc_call_lines(record: logging.LogRecord) -> bool:
    """Drop KServe's gRPC interceptor line for every call ("grpc method: ..."), its errors kept."""
    return not (record.module == "interceptors" and record.levelno < logging.WARNING)


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
