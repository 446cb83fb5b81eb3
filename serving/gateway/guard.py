"""ASGI layers in front of the routes: limits and authentication before any work.

`RequestGuard`, for every HTTP request, in this order:

1. a declared ``Content-Length`` above `max_body_bytes` gets 413 (nothing read);
2. on ``/v1``: a client over its failed-authentication limit gets 429, a missing or unknown
   ``X-API-Key`` gets 401 (the failure counted), else the `Principal` is put in the scope;
3. the body is read, counted as it streams (chunked bodies included), up to `max_body_bytes`
   (else 413, the rest never buffered) within `body_timeout_s` (else 408);
4. the app runs with the buffered body; no answer started within `request_timeout_s`: 504.

`SecurityHeaders` adds ``nosniff`` (and more) to every answer and ``Cache-Control: no-store``
to every ``/v1`` answer. Answers of these layers are a few dozen bytes of JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.gateway.principals import NAME, Principal, Principals
from serving.metrics import GatewayMetrics
from serving.settings import GatewaySettings

log = logging.getLogger(__name__)
API_KEY_HEADER = "X-API-Key"
#: Prefix of the versioned, authenticated API.
V1 = "/v1"
#: Where the guard leaves the authenticated principal (``request.state.principal``).
PRINCIPAL = "principal"


class _Refused(Exception):
    """Ends a request early with a small JSON answer."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def is_v1(scope: Scope) -> bool:
    """Whether the request is for the authenticated API (the path below any root path)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path == V1 or path.startswith(V1 + "/")


async def send_json(send: Send, status: int, detail: str,
                    headers: dict[str, str] | None = None) -> None:
    """A complete small JSON answer ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class FailedAuthLimiter:
    """Failed authentications per client address, a moving window (the `limits` library)."""

    def __init__(self, limit: str) -> None:
        self._item = parse(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def blocked(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it may now."""
        if self._limiter.test(self._item, client):
            return None
        reset = self._limiter.get_window_stats(self._item, client).reset_time
        return max(1, int(reset - time.time()) + 1)

    def failed(self, client: str) -> None:
        self._limiter.hit(self._item, client)


class RequestGuard:
    """Pure ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, *, principals: Principals, settings: GatewaySettings,
                 metrics: GatewayMetrics) -> None:
        self.app = app
        self.principals = principals
        self.settings = settings
        self.metrics = metrics
        self.limiter = FailedAuthLimiter(settings.auth_failure_limit)
        self.identity_header = settings.trusted_identity_header.lower().encode()
        self.proxies = set(settings.trusted_proxy_principals)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_length(scope)
            if is_v1(scope):
                principal = self._authenticate(scope)
                scope.setdefault("state", {})[PRINCIPAL] = principal
            body = await self._read_body(receive)
        except _Refused as refused:
            await send_json(send, refused.status, refused.detail, refused.headers)
            return
        await self._run(scope, _replay(body, receive), send)

    def _check_length(self, scope: Scope) -> None:
        declared = _header(scope, b"content-length")
        if declared is None:
            return
        if not declared.isascii() or not declared.isdigit():
            raise _Refused(400, "invalid Content-Length")
        if int(declared) > self.settings.max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> _Refused:
        self.metrics.refused.labels("too_large").inc()
        return _Refused(413, f"request body larger than {self.settings.max_body_bytes} bytes")

    def _authenticate(self, scope: Scope) -> Principal:
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.limiter.blocked(client)
        if wait is not None:
            self.metrics.refused.labels("auth_rate_limited").inc()
            raise _Refused(429, "too many failed authentications; retry later",
                           {"Retry-After": str(wait)})
        principal = self.principals.match(_raw_header(scope, API_KEY_HEADER.lower().encode()))
        if principal is not None and principal.name in self.proxies and self.identity_header:
            principal = self._vouched(scope, principal)
        if principal is None:
            self.limiter.failed(client)
            self.metrics.auth_failures.inc()
            raise _Refused(401, "missing or invalid API key",
                           {"WWW-Authenticate": API_KEY_HEADER})
        return principal

    def _vouched(self, scope: Scope, proxy: Principal) -> Principal | None:
        """The user the trusted proxy names (None, a failure, when it names nobody valid)."""
        user = _header(scope, self.identity_header)
        if user is None or not NAME.match(user):
            log.warning("proxy principal %s sent no valid %s header", proxy.name,
                        self.settings.trusted_identity_header)
            return None
        return Principal(user, proxy.roles, via=proxy.name)

    async def _read_body(self, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # client went away
                        raise _Refused(400, "client disconnected")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:  # stop here: the rest is never buffered
                        raise self._too_large()
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            self.metrics.refused.labels("body_timeout").inc()
            raise _Refused(408, "request body not received in time") from None

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, answered with 504 when it has not started answering in time."""
        started = False
        abandoned = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if abandoned:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, tracked_send))
        done, _ = await asyncio.wait({task}, timeout=self.settings.request_timeout_s)
        if task in done:
            task.result()  # re-raise what the app raised
            return
        if started:  # answering already (a large report): let it finish
            await task
            return
        abandoned = True
        task.cancel()
        task.add_done_callback(_retrieve)
        self.metrics.refused.labels("timeout").inc()
        log.warning("%s %s: no answer within %gs", scope["method"], scope["path"],
                    self.settings.request_timeout_s)
        await send_json(send, 504, "request timed out")


def _retrieve(task: asyncio.Future) -> None:
    with contextlib.suppress(BaseException):
        task.result()


def _raw_header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    value = _raw_header(scope, name)
    return None if value is None else value.decode("latin-1")


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A `receive` that hands out the buffered body once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


#: Headers of every answer; /v1 answers also get Cache-Control: no-store.
_COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                   (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """Pure ASGI middleware: hardening headers; no ``server`` header leaves the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authenticated = is_v1(scope)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"server", b"cache-control")
                           or (k.lower() == b"cache-control" and not authenticated)]
                headers += _COMMON_HEADERS
                if authenticated:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
