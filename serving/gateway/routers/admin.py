"""`GET /v1/admin/principals`: who may call the gateway, and with which roles (never keys)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.gateway.deps import V1, ServicesDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import PrincipalOut

router = APIRouter(prefix=V1, tags=["admin"], route_class=StrictJSONRoute)


@router.get("/admin/principals", response_model=list[PrincipalOut])
def list_principals(services: ServicesDep) -> list[PrincipalOut]:
    """The configured principals: names and roles."""
    return [PrincipalOut(name=p.name, roles=sorted(role.value for role in p.roles))
            for p in services.principals.described()]
