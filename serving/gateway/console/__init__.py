"""The analyst console: server-rendered pages under ``/console`` (no front-end build).

An analyst logs in with their API key (the same principals as the API), works the alert queue
(riskiest first, filtered, keyset-paginated), opens a case and gives a verdict that reaches the
store and the `labels` topic through the API's feedback path, and edits the deny and allow lists
that rules read. `mount_console` adds the pages,
their static files and their error pages to the gateway's app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from serving.gateway.console.auth import PREFIX, Console, ConsoleRefusal, LoginRequired
from serving.gateway.console.lists_pages import router as lists_router
from serving.gateway.console.pages import render, router
from serving.gateway.deps import Services

__all__ = ["mount_console"]
STATIC = Path(__file__).parent / "static"


def mount_console(app: FastAPI, services: Services) -> None:
    """Serve the console on `app` (its state gets the `Console`)."""
    app.state.console = Console.build(services)
    app.include_router(router)
    app.include_router(lists_router)
    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC), name="console_static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(ConsoleRefusal, _refused)


def _to_login(request: Request, _: Exception) -> Response:
    return RedirectResponse(request.scope.get("root_path", "") + PREFIX + "/login",
                            status_code=303, headers={"Cache-Control": "no-store"})


def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsoleRefusal)
    return render(request, request.app.state.console, "error.html", status=error.status,
                  message=error.message)
