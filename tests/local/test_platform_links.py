"""The links the local platform prints at the end of `fraudops demo` / `fraudops up`: the analyst
console on the gateway, and a gateway key that can log in to it. Nothing is started."""

from __future__ import annotations

import pytest

from local import services
from local.platform import LocalPlatform
from local.timeline import Timeline


def test_links_lead_to_the_analyst_console_on_the_gateway(tmp_path) -> None:
    platform = LocalPlatform(tmp_path / "home", clean=True, timeline=Timeline.of())
    links = platform.links()
    assert links["Analyst console"] == f"{platform.layout.gateway_url}/console"
    assert links["gateway API docs"] == f"{platform.layout.gateway_url}/docs"
    assert links["gateway API key"] == services.LOCAL_API_KEY


def test_the_local_gateway_key_may_log_in_to_the_console(tmp_path) -> None:
    pytest.importorskip("fastapi", reason="the serving extra is not installed")
    from serving.gateway.console.auth import CONSOLE_ROLES
    from serving.gateway.principals import Principals
    from serving.settings import GatewaySettings

    env = services.gateway(LocalPlatform(tmp_path / "home", clean=True,
                                         timeline=Timeline.of()).layout).env
    principals = Principals.parse(env["FRAUDOPS_GATEWAY__API_KEYS"],
                                  GatewaySettings().bare_key_roles)
    principal = principals.match(services.LOCAL_API_KEY.encode())
    assert principal is not None and principal.roles & CONSOLE_ROLES
