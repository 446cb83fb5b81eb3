"""Unauthenticated operational routes: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from serving.exceptions import ServingError
from serving.gateway import queries
from serving.gateway.deps import Services, ServicesDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import ComponentStatus, Readiness

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"], route_class=StrictJSONRoute)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Kafka or the store is down."}})
async def readyz(services: ServicesDep, response: Response) -> Readiness:
    """Ready when Kafka and the store answer (ingestion and alerts work); the predictor's state
    is reported but does not gate readiness: only `/v1/score` needs it."""
    kafka = await run_in_threadpool(services.producer.reachable)
    store = await run_in_threadpool(_store_status, services)
    predictor = await services.predictor.ready()
    ready = kafka and store.ok
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=ready, kafka=ComponentStatus(ok=kafka), store=store,
                     predictor=ComponentStatus(ok=predictor))


def _store_status(services: Services) -> ComponentStatus:
    try:
        queries.ping(services.store.get())
    except (ServingError, SQLAlchemyError) as error:  # the driver's words go to the log only
        log.warning("readiness: decision store unavailable: %s: %s", type(error).__name__, error)
        return ComponentStatus(ok=False, detail="unavailable")
    return ComponentStatus(ok=True)


@router.get("/metrics", include_in_schema=False)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
