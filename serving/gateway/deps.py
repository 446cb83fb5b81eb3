"""Shared resources of the gateway and their FastAPI dependencies (``Annotated`` aliases).

`Services` is built once per app (in `create_app`) and kept on ``app.state``; routes receive
pieces of it through the aliases below, so tests can build an app around any settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import SQLAlchemyError

from fraudops.store import SchemaNotCurrentError, Store, StoreError
from serving.exceptions import StoreUnavailableError
from serving.gateway.guard import API_KEY_HEADER, PRINCIPAL, V1
from serving.gateway.kafka import AckedProducer
from serving.gateway.predictor_client import PredictorClient
from serving.gateway.principals import Principal, Principals, Role
from serving.gateway.reports import DriftReports
from serving.metrics import GatewayMetrics
from serving.settings import GatewayServiceSettings

if TYPE_CHECKING:  # it imports LazyStore from here
    from serving.gateway.rules import GatewayRules

log = logging.getLogger(__name__)
__all__ = ["API_KEY_HEADER", "V1", "PrincipalDep", "ServicesDep", "StoreDep", "require_role"]


class LazyStore:
    """Opens the store on first use (the gateway starts even while the database is down)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._store: Store | None = None
        self._lock = threading.Lock()

    def get(self) -> Store:
        """The store; `StoreUnavailableError` while it is down or not at this release's schema
        (`Store.open_current`: the error's cause is then `SchemaNotCurrentError`)."""
        with self._lock:
            if self._store is None:
                try:
                    self._store = Store.open_current(self._url)
                except (SQLAlchemyError, StoreError) as error:
                    raise StoreUnavailableError(f"decision store unavailable: {error}") from error
            return self._store

    def check_schema(self) -> None:
        """At startup: raise `SchemaNotCurrentError` for a database not at this release's
        schema (run `fraudops db upgrade`); one that does not answer is left for later."""
        try:
            self.get()
        except StoreUnavailableError as error:
            if isinstance(error.__cause__, SchemaNotCurrentError):
                raise error.__cause__ from None
            log.warning("%s (the gateway starts; requests that need it answer 503)", error)

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
    principals: Principals
    #: The rule set /v1/score applies (`serving.gateway.rules.GatewayRules`; None: none).
    rules: GatewayRules | None = None


def _services(request: Request) -> Services:
    return request.app.state.services


def _store(services: Annotated[Services, Depends(_services)]) -> Store:
    return services.store.get()


ServicesDep = Annotated[Services, Depends(_services)]
StoreDep = Annotated[Store, Depends(_store)]
#: Documents the header in the OpenAPI schema; `RequestGuard` checks it before the body is read.
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                        description="The key of a principal configured in "
                                    "FRAUDOPS_GATEWAY__API_KEYS (NAME:ROLES:KEY).")


def _principal(request: Request, _: Annotated[str | None, Security(_api_key)] = None
               ) -> Principal:
    principal = getattr(request.state, PRINCIPAL, None)
    if not isinstance(principal, Principal):  # only reachable without the guard in front
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or invalid API key",
                            headers={"WWW-Authenticate": API_KEY_HEADER})
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal)]


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that answers 403 unless the authenticated principal holds `role`."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.may(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"this route needs the {role.value} role")
        return principal

    return check
