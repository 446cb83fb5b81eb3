"""`GET /v1/drift/reports[/{report_id}]`: the drift job's reports (layout in `..reports`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, JSONResponse

from serving.exceptions import ReportNotFoundError
from serving.gateway.deps import V1, ServicesDep
from serving.gateway.errors import StrictJSONRoute
from serving.gateway.schemas import DriftReportPage

router = APIRouter(prefix=V1, tags=["drift"], route_class=StrictJSONRoute)
#: The Evidently report runs its inline scripts in a sandbox: an opaque origin (no cookies,
#: storage or same-origin requests to the API), no network, no forms, no framing.
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' "
              "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
              "connect-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
ReportId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


@router.get("/drift/reports", response_model=DriftReportPage)
def list_reports(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                 offset: Annotated[int, Query(ge=0)] = 0) -> DriftReportPage:
    """Drift reports, newest first."""
    reports = services.reports.list()
    return DriftReportPage(items=reports[offset:offset + limit], limit=limit, offset=offset,
                           total=len(reports))


@router.get("/drift/reports/{report_id}", response_model=None,
            responses={200: {"content": {"text/html": {}, "application/json": {}},
                             "description": "The HTML report, or its JSON summary."},
                       404: {"description": "No such report (or not in that format)."}})
def show_report(report_id: ReportId, services: ServicesDep,
                format: Literal["html", "json"] = "html") -> Any:
    """The report as HTML (default) or its JSON summary (``?format=json``)."""
    try:
        if format == "json":
            return JSONResponse(services.reports.document(report_id))
        return FileResponse(services.reports.html(report_id), media_type="text/html",
                            headers={"Content-Security-Policy": REPORT_CSP})
    except ReportNotFoundError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
