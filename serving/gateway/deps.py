"""Shared resources of the gateway and their FastAPI dependencies (``Annotated`` aliases).

`Services` is built once per app (in `create_app`) and kept on ``app.state``; routes receive
pieces of it through the aliases below, so tests can build an app around any settings.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError

from fraudops.store import Store, StoreError
from serving.exceptions import StoreUnavailableError
from serving.gateway.kafka import AckedProducer
from serving.gateway.predictor_client import PredictorClient
from serving.gateway.reports import DriftReports
from serving.metrics import GatewayMetrics
from serving.settings import GatewayServiceSettings

API_KEY_HEADER = "X-API-Key"
#: Prefix of the versioned, authenticated API.
V1 = "/v1"


class LazyStore:
    """Opens the store on first use (the gateway starts even while the database is down)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._store: Store | None = None
        self._lock = threading.Lock()

    def get(self) -> Store:
        with self._lock:
            if self._store is None:
                try:
                    self._store = Store.from_url(self._url)
                except (SQLAlchemyError, StoreError) as error:
                    raise StoreUnavailableError(f"decision store unavailable: {error}") from error
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


@dataclass
class Services:
    """Everything request handlers use."""

    settings: GatewayServiceSettings
    metrics: GatewayMetrics
    producer: AckedProducer
    store: LazyStore
    predictor: PredictorClient
    reports: DriftReports
    api_keys: list[bytes] = field(default_factory=list)


def _services(request: Request) -> Services:
    return request.app.state.services


def _store(services: Annotated[Services, Depends(_services)]) -> Store:
    return services.store.get()


ServicesDep = Annotated[Services, Depends(_services)]
StoreDep = Annotated[Store, Depends(_store)]
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="One of the keys configured in FRAUDOPS_GATEWAY__API_KEYS.")


def require_api_key(services: ServicesDep,
                    key: Annotated[str | None, Security(_api_key)] = None) -> None:
    """401 unless the request carries a configured API key (compared in constant time)."""
    candidate = (key or "").encode()
    matched = False
    for accepted in services.api_keys:  # no early exit: timing does not reveal which key
        matched |= hmac.compare_digest(accepted, candidate)
    if not matched:
        services.metrics.auth_failures.inc()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or invalid API key",
                            headers={"WWW-Authenticate": API_KEY_HEADER})
