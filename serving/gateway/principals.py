"""Who is calling: principals (named API keys with roles) and how a request is matched to one.

A principal is configured as ``NAME:ROLE[+ROLE...]:KEY`` (see `GatewaySettings.api_keys`).
Roles are not ordered: ``admin`` does not imply ``analyst``; a principal that needs both lists
both. The analyst identity recorded with a label is the principal's name, or the user a trusted
authenticating proxy names in `GatewaySettings.trusted_identity_header`, never the body.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

from serving.exceptions import ConfigurationError

#: Principal and user names: what the label history records as the analyst.
NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


class Role(StrEnum):
    """What a principal may do: each /v1 route requires one role."""

    INGEST = "ingest"  # POST /v1/transactions, POST /v1/score
    ANALYST = "analyst"  # alerts, feedback, drift reports (the console's routes)
    ADMIN = "admin"  # principals (and, later, lists and rules)
    VIEWER = "viewer"  # read-only: the console's queue and cases, never a label


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `via` names the proxy principal that vouched for a user."""

    name: str
    roles: frozenset[Role]
    via: str | None = None

    def may(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class _Entry:
    key: bytes
    principal: Principal


class Principals:
    """The configured principals; `match` compares a presented key with every one of them."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def parse(cls, raw: str, bare_key_roles: list[str]) -> Principals:
        """Parse comma-separated ``NAME:ROLES:KEY`` entries; a bare ``KEY`` gets
        `bare_key_roles` and the name ``key-<position>``. Raises `ConfigurationError`."""
        items = [item.strip() for item in raw.split(",") if item.strip()]
        entries = [_parse_entry(item, position, bare_key_roles)
                   for position, item in enumerate(items, start=1)]
        if not entries:
            raise ConfigurationError("no API key configured: set FRAUDOPS_GATEWAY__API_KEYS "
                                     "(NAME:ROLE:KEY entries, comma-separated, from a Secret)")
        keys = [entry.key for entry in entries]
        names = [entry.principal.name for entry in entries]
        if len(set(keys)) != len(keys) or len(set(names)) != len(names):
            raise ConfigurationError("FRAUDOPS_GATEWAY__API_KEYS repeats a key or a name")
        return cls(entries)

    def match(self, presented: bytes | None) -> Principal | None:
        """The principal whose key equals `presented` (the header's raw bytes), compared in
        constant time with every key, so timing reveals neither a key nor which one matched."""
        candidate = presented or b""
        found = None
        for entry in self._entries:
            if hmac.compare_digest(entry.key, candidate) and candidate:
                found = entry.principal
        return found

    def described(self) -> list[Principal]:
        """Every principal (names and roles only; for the admin listing)."""
        return [entry.principal for entry in self._entries]


def _parse_entry(item: str, position: int, bare_key_roles: list[str]) -> _Entry:
    if item.count(":") >= 2:
        name, roles_text, key = item.split(":", 2)
        roles = roles_text.split("+")
    else:  # never a name derived from the key: names are shown to analysts and admins
        name, key, roles = f"key-{position}", item, bare_key_roles
    name, key = name.strip(), key.strip()
    if not NAME.match(name):
        raise ConfigurationError(f"principal name {name[:40]!r} must match {NAME.pattern}")
    if not key:
        raise ConfigurationError(f"principal {name!r} has an empty key")
    try:
        parsed = frozenset(Role(role.strip()) for role in roles if role.strip())
    except ValueError:
        raise ConfigurationError(
            f"principal {name!r}: roles must be among {', '.join(Role)}") from None
    if not parsed:
        raise ConfigurationError(f"principal {name!r} has no role")
    return _Entry(key.encode(), Principal(name, parsed))
