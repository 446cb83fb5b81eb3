"""The console's sessions: a signed cookie naming the principal, and the form's CSRF token.

The browser presents an API key once, on the login form; the gateway then keeps only the
principal's name in a cookie signed with `GatewaySettings.console_session_secret` (itsdangerous,
with its time stamp checked against the session's lifetime). The key itself never reaches the
cookie or a page. The principal is looked up again on every request, so a key removed from the
configuration ends its sessions at the gateway's next start.

Every session, a logged-out one too (the login form's), carries a random CSRF token that every
POST form repeats; logging in replaces it, so a token seen before login is worthless after.
The cookie is HttpOnly, SameSite=Strict and (by default) Secure.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass

from fastapi import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from serving.exceptions import ConfigurationError
from serving.settings import GatewaySettings

log = logging.getLogger(__name__)
COOKIE = "fraudops_console"
#: Shortest configured signing key accepted (bytes).
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class ConsoleSession:
    """What the cookie holds: the CSRF token, and the principal's name once logged in."""

    csrf: str
    principal: str | None = None

    @classmethod
    def fresh(cls, principal: str | None = None) -> ConsoleSession:
        return cls(secrets.token_urlsafe(32), principal)

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether a form's token is this session's (compared in constant time)."""
        return bool(presented) and hmac.compare_digest(self.csrf.encode(),
                                                       str(presented).encode())


class SessionCodec:
    """Reads and writes the session cookie."""

    def __init__(self, settings: GatewaySettings) -> None:
        secret = settings.console_session_secret.get_secret_value()
        if not secret:
            log.warning("FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET is not set: console sessions "
                        "use a random key and end when this gateway restarts")
            secret = secrets.token_urlsafe(48)
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET must be at "
                                     f"least {MIN_SECRET_BYTES} bytes")
        self._serializer = URLSafeTimedSerializer(secret, salt="fraudops-console-session")
        self._max_age = settings.console_session_max_age_s
        self._secure = settings.console_cookie_secure

    def read(self, cookie: str | None) -> ConsoleSession | None:
        """The session of a cookie; None when absent, forged, tampered with or expired."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:  # SignatureExpired is one too
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        principal = data.get("principal")
        return ConsoleSession(data["csrf"], principal if isinstance(principal, str) else None)

    def write(self, response: Response, session: ConsoleSession, path: str) -> None:
        """Set the cookie of `session` on `response`, valid under `path`."""
        value = self._serializer.dumps({"csrf": session.csrf, "principal": session.principal})
        response.set_cookie(COOKIE, value, max_age=self._max_age, path=path, httponly=True,
                            samesite="strict", secure=self._secure)

    def clear(self, response: Response, path: str) -> None:
        response.delete_cookie(COOKIE, path=path, httponly=True, samesite="strict",
                               secure=self._secure)
