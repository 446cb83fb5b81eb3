"""The gateway's FastAPI application factory.

Routes: ``/v1/transactions`` and ``/v1/score`` (role ingest), ``/v1/alerts``, ``/v1/feedback``,
``/v1/drift/reports`` and ``/v1/lists`` (role analyst; creating a list: admin),
``/v1/admin/principals`` (role admin), all behind
the ``X-API-Key`` header; ``/healthz``, ``/readyz``, ``/metrics``; ``/docs`` and
``/openapi.json`` only when `GatewaySettings.docs_enabled`; the analyst console under
``/console`` (a session cookie after a login with an API key) unless `console_enabled` is off.
Layers, outermost first: request metrics, security headers, TrustedHost (when hosts are
configured), CORS (when origins are), `RequestGuard` (limits, authentication, timeouts), then
the routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import fraudops
from fraudops.store import SchemaNotCurrentError
from serving.gateway.console import mount_console
from serving.gateway.deps import LazyStore, Services, require_role
from serving.gateway.docs import mount_docs
from serving.gateway.errors import add_error_handlers
from serving.gateway.guard import API_KEY_HEADER, RequestGuard, SecurityHeaders
from serving.gateway.kafka import AckedProducer
from serving.gateway.predictor_client import PredictorClient
from serving.gateway.principals import Principals, Role
from serving.gateway.reports import DriftReports
from serving.gateway.routers import (
    admin,
    alerts,
    drift,
    feedback,
    health,
    lists,
    score,
    transactions,
)
from serving.gateway.rules import GatewayRules
from serving.metrics import GatewayMetrics
from serving.settings import GatewayServiceSettings

log = logging.getLogger(__name__)
#: The role each /v1 router requires.
ROUTER_ROLES = ((transactions, Role.INGEST), (score, Role.INGEST), (alerts, Role.ANALYST),
                (feedback, Role.ANALYST), (drift, Role.ANALYST), (admin, Role.ADMIN))
_AUTH_RESPONSES = {401: {"description": "Missing or invalid API key."},
                   403: {"description": "The principal lacks this route's role."},
                   413: {"description": "Body larger than the configured limit."},
                   429: {"description": "Too many failed authentications from this client."}}


def build_services(settings: GatewayServiceSettings) -> Services:
    """The gateway's resources; nothing connects until first use. Raises
    `ConfigurationError` for API keys that cannot work."""
    gateway = settings.gateway
    principals = Principals.parse(gateway.api_keys.get_secret_value(), gateway.bare_key_roles)
    metrics = GatewayMetrics()
    store = LazyStore(settings.database.resolved_url(settings.home))
    return Services(
        settings=settings, metrics=metrics,
        producer=AckedProducer(settings.kafka, gateway.produce_timeout_s), store=store,
        predictor=PredictorClient(gateway.predictor_url, gateway.predictor_model,
                                  gateway.predictor_timeout_s),
        reports=DriftReports(gateway.resolved_reports_dir(settings.home)),
        principals=principals,
        rules=GatewayRules(gateway.rules_path, gateway.rules_refresh_s, store, metrics))


async def _check_store_schema(store: LazyStore, wait_s: float = 10.0) -> None:
    """Refuse to start on a database not at this release's schema (the error names
    `fraudops db upgrade`); a database that does not answer within `wait_s` is left for later."""
    try:
        await asyncio.wait_for(asyncio.to_thread(store.check_schema), wait_s)
    except TimeoutError:
        log.warning("decision store not answering at startup; the gateway starts without it")
    except SchemaNotCurrentError as error:
        log.error("refusing to start: %s", error)
        raise


def create_app(settings: GatewayServiceSettings) -> FastAPI:
    """Build the app; raises `ConfigurationError` for settings that cannot work."""
    services = build_services(settings)
    gateway = settings.gateway

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await _check_store_schema(services.store)
        yield
        services.producer.close()
        services.store.close()
        await services.predictor.aclose()

    app = FastAPI(title="fraudops gateway", version=fraudops.__version__, lifespan=lifespan,
                  description="Transaction ingestion, synchronous scoring, analyst alerts and "
                              "feedback, drift reports. Every /v1 route needs X-API-Key.",
                  docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.state.services = services
    for module, role in ROUTER_ROLES:
        app.include_router(module.router, dependencies=[Depends(require_role(role))],
                           responses=_AUTH_RESPONSES)
    # Roles per route: reading and editing entries (analyst), creating lists (admin).
    app.include_router(lists.router, responses=_AUTH_RESPONSES)
    app.include_router(health.router)
    if gateway.console_enabled:
        mount_console(app, services)
    if gateway.docs_enabled:
        mount_docs(app)
    add_error_handlers(app)
    app.add_middleware(RequestGuard, principals=services.principals, settings=gateway,
                       metrics=services.metrics)
    if gateway.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=gateway.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=[API_KEY_HEADER, "Content-Type"])
    if gateway.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=gateway.allowed_hosts,
                           www_redirect=False)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics, metrics=services.metrics)
    return app


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
