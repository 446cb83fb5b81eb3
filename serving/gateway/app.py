"""The gateway's FastAPI application factory.

Routes: ``/v1/transactions``, ``/v1/score``, ``/v1/alerts``, ``/v1/feedback``,
``/v1/drift/reports`` (all behind the ``X-API-Key`` header), ``/healthz``, ``/readyz``,
``/metrics``, and the OpenAPI docs at ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import fraudops
from serving.exceptions import (
    ConfigurationError,
    KafkaUnavailableError,
    PredictorUnavailableError,
    StoreUnavailableError,
)
from serving.gateway.deps import LazyStore, Services, require_api_key
from serving.gateway.kafka import AckedProducer
from serving.gateway.predictor_client import PredictorClient
from serving.gateway.reports import DriftReports
from serving.gateway.routers import alerts, drift, feedback, health, score, transactions
from serving.metrics import GatewayMetrics
from serving.settings import GatewayServiceSettings


def build_services(settings: GatewayServiceSettings) -> Services:
    """The gateway's resources; nothing connects until first use."""
    g = settings.gateway
    keys = g.keys()
    if not keys:
        raise ConfigurationError("no API key configured: set FRAUDOPS_GATEWAY__API_KEYS "
                                 "(comma-separated, from a Secret)")
    return Services(
        settings=settings, metrics=GatewayMetrics(),
        producer=AckedProducer(settings.kafka, g.produce_timeout_s),
        store=LazyStore(settings.database.resolved_url(settings.home)),
        predictor=PredictorClient(g.predictor_url, g.predictor_model, g.predictor_timeout_s),
        reports=DriftReports(g.resolved_reports_dir(settings.home)),
        api_keys=keys)


def create_app(settings: GatewayServiceSettings) -> FastAPI:
    """Build the app; raises `ConfigurationError` for settings that cannot work."""
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        services.producer.close()
        services.store.close()
        await services.predictor.aclose()

    app = FastAPI(title="fraudops gateway", version=fraudops.__version__, lifespan=lifespan,
                  description="Transaction ingestion, synchronous scoring, analyst alerts and "
                              "feedback, drift reports. Every /v1 route needs X-API-Key.")
    app.state.services = services
    for module in (transactions, score, alerts, feedback, drift):  # all under /v1
        app.include_router(module.router, dependencies=[Depends(require_api_key)],
                           responses={401: {"description": "Missing or invalid API key."}})
    app.include_router(health.router)
    _add_error_handlers(app)
    if settings.gateway.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.gateway.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["X-API-Key",
                                                                         "Content-Type"])
    app.add_middleware(RequestMetrics, metrics=services.metrics)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def unavailable(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse(status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            content={"detail": str(error)}, headers={"Retry-After": "5"})

    def kafka_down(request: Request, error: Exception) -> JSONResponse:
        request.app.state.services.metrics.kafka_errors.inc()
        return unavailable(request, error)

    def database_down(request: Request, error: Exception) -> JSONResponse:
        return unavailable(request, StoreUnavailableError(
            f"decision store unavailable: {type(error).__name__}"))

    app.add_exception_handler(KafkaUnavailableError, kafka_down)
    app.add_exception_handler(PredictorUnavailableError, unavailable)
    app.add_exception_handler(StoreUnavailableError, unavailable)
    app.add_exception_handler(SQLAlchemyError, database_down)


class RequestMetrics:
    """Pure ASGI middleware: latency per route template (low cardinality), method and status."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.histogram = metrics.request_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.histogram.labels(scope["method"], template, f"{status_code // 100}xx").observe(
                time.perf_counter() - start)
