"""`GET /v1/alerts` and `GET /v1/alerts/{transaction_id}` from the decision store."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from fraudops.schema import AlertDecision
from fraudops.store import AlertStatus, NotFoundError
from serving.gateway import queries
from serving.gateway.deps import V1, ServicesDep, StoreDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import AlertDetail, AlertOut, AlertPage, LabelEventOut, LabelOut

router = APIRouter(prefix=V1, tags=["alerts"], route_class=StrictJSONRoute)
TransactionId = Annotated[str, Path(min_length=1, max_length=128,
                                    pattern=r"^[A-Za-z0-9_.:@/+-]+$")]


@router.get("/alerts", response_model=AlertPage)
def list_alerts(
    store: StoreDep,
    services: ServicesDep,
    since: Annotated[datetime | None, Query(description="Event time >= (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Event time < (ISO 8601).")] = None,
    account_id: Annotated[str | None, Query(max_length=128)] = None,
    decision: AlertDecision | None = None,
    alert_status: Annotated[AlertStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AlertPage:
    """Alerts, newest event first, filtered and paginated (follow `next_offset`)."""
    limit = min(limit, services.settings.gateway.max_page_size)
    filters = queries.AlertFilter(since, until, account_id, decision,
                                  alert_status.value if alert_status else None)
    rows = queries.list_alerts(store, filters, limit, offset)
    return AlertPage(items=[AlertOut.model_validate(row) for row in rows], limit=limit,
                     offset=offset, next_offset=offset + len(rows) if len(rows) == limit else None)


@router.get("/alerts/{transaction_id}", response_model=AlertDetail,
            responses={404: {"description": "No alert for this transaction."}})
def get_alert(transaction_id: TransactionId, store: StoreDep) -> AlertDetail:
    """One alert with the stored transaction, its current verdict and every label given."""
    try:
        alert = store.get_alert(transaction_id)
    except NotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    decision, label, history = queries.alert_details(store, transaction_id)
    return AlertDetail(
        **AlertOut.model_validate(alert).model_dump(),
        transaction=json.loads(decision.transaction_json) if decision else None,
        model_version=decision.model_version if decision else None,
        label=LabelOut.model_validate(label) if label else None,
        label_history=[LabelEventOut.model_validate(entry) for entry in history],
        label_conflict=len({entry.label for entry in history}) > 1)
