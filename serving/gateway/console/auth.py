"""Who uses the console: login with an API key, the session's principal, roles, CSRF.

Roles are the API's (`serving.gateway.principals.Role`): ``analyst`` works the queue (reads and
labels) and edits list entries, ``viewer`` only reads the queue, ``admin`` creates lists. A
principal with none of these cannot log in. Failed logins are limited per client address like
failed API keys (`GatewaySettings.auth_failure_limit`, a counter of the console's own) and
counted in the same metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from serving.gateway.console.session import COOKIE, ConsoleSession, SessionCodec
from serving.gateway.deps import Services
from serving.gateway.guard import FailedAuthLimiter
from serving.gateway.principals import Principal, Role

TEMPLATES = Path(__file__).parent / "templates"
#: Roles that may log in to the console (to read the queue at least).
CONSOLE_ROLES = frozenset({Role.ANALYST, Role.VIEWER, Role.ADMIN})
#: Where the console lives (below the app's root path).
PREFIX = "/console"


class LoginRequired(Exception):
    """No valid session: the browser is sent to the login form."""


class ConsoleRefusal(Exception):
    """A request the console refuses with an error page (status and a message for people)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Console:
    """The console's shared pieces, built once per app (`mount_console`)."""

    services: Services
    codec: SessionCodec
    templates: Jinja2Templates
    limiter: FailedAuthLimiter
    principals: dict[str, Principal] = field(default_factory=dict)

    @classmethod
    def build(cls, services: Services) -> Console:
        settings = services.settings.gateway
        # Autoescaping for every template: what the console shows comes from transactions,
        # models and analysts, and is never markup.
        environment = Environment(loader=FileSystemLoader(TEMPLATES),
                                  autoescape=select_autoescape(default=True), auto_reload=False)
        return cls(services, SessionCodec(settings), Jinja2Templates(env=environment),
                   FailedAuthLimiter(settings.auth_failure_limit),
                   {p.name: p for p in services.principals.described()})

    def login(self, client: str, key: str) -> Principal:
        """The principal holding `key`; raises `ConsoleRefusal` (401, 403, 429)."""
        wait = self.limiter.blocked(client)
        if wait is not None:
            self.services.metrics.refused.labels("auth_rate_limited").inc()
            raise ConsoleRefusal(429, f"Too many failed logins; try again in {wait} s.")
        principal = self.services.principals.match(key.encode())
        if principal is None:
            self.limiter.failed(client)
            self.services.metrics.auth_failures.inc()
            raise ConsoleRefusal(401, "Unknown API key.")
        if not principal.roles & CONSOLE_ROLES:
            raise ConsoleRefusal(403, f"{principal.name} may not use the console (it needs "
                                      "the analyst, viewer or admin role).")
        return principal


@dataclass(frozen=True)
class User:
    """A logged-in principal and its session."""

    principal: Principal
    session: ConsoleSession

    @property
    def may_label(self) -> bool:
        return self.principal.may(Role.ANALYST)

    @property
    def may_read(self) -> bool:
        return self.principal.may(Role.ANALYST) or self.principal.may(Role.VIEWER)


def console(request: Request) -> Console:
    return request.app.state.console


ConsoleDep = Annotated[Console, Depends(console)]


def session_of(request: Request, app_console: ConsoleDep) -> ConsoleSession | None:
    return app_console.codec.read(request.cookies.get(COOKIE))


def current_user(request: Request, app_console: ConsoleDep) -> User:
    """The logged-in user; `LoginRequired` without a valid session or for a principal no
    longer configured."""
    session = session_of(request, app_console)
    principal = app_console.principals.get(session.principal) if session and \
        session.principal else None
    if principal is None:
        raise LoginRequired
    return User(principal, session)


UserDep = Annotated[User, Depends(current_user)]


def reader(user: UserDep) -> User:
    """A user who may read the queue (analyst or viewer)."""
    if not user.may_read:
        raise ConsoleRefusal(403, "Reading alerts needs the analyst or viewer role.")
    return user


def labeller(user: UserDep) -> User:
    """A user who may label alerts (analyst)."""
    if not user.may_label:
        raise ConsoleRefusal(403, "Labelling alerts needs the analyst role.")
    return user


def admin(user: UserDep) -> User:
    if not user.principal.may(Role.ADMIN):
        raise ConsoleRefusal(403, "Managing lists needs the admin role.")
    return user


def check_csrf(session: ConsoleSession | None, token: str | None) -> None:
    """Refuse (403) a form whose token is not the session's."""
    if session is None or not session.csrf_matches(token):
        raise ConsoleRefusal(403, "This form expired or did not come from the console; "
                                  "reload the page and try again.")


ReaderDep = Annotated[User, Depends(reader)]
LabellerDep = Annotated[User, Depends(labeller)]
AdminDep = Annotated[User, Depends(admin)]
