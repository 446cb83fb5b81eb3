"""API docs, only when enabled (`GatewaySettings.docs_enabled`): ``/openapi.json`` and Swagger UI
whose script and style come from this gateway (``/docs/assets``, the Swagger UI 5 files the
`fastapi-offline` package ships), so the page loads nothing from a public CDN."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
#: The docs page runs only this origin's scripts and fetches only its schema.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


def mount_docs(app: FastAPI) -> None:
    """Add ``/openapi.json``, ``/docs`` and the Swagger UI assets to `app`."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png")
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
