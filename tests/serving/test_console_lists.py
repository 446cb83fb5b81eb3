"""The console's list pages: entries validated as the API does, roles, CSRF, escaping.

In process (`gateway_fakes`: real routes and SQLite store); lists are the rules helper's store
tables (`fraudops.store.lists`), changed here only through the console's forms.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from console_helpers import VIEWER_KEY, XSS, browser, csrf_of, login
from gateway_fakes import ADMIN_KEY, ANALYST_KEY, PRINCIPALS, build

from fraudops.store import Store


@pytest.fixture
def gateway(tmp_path: Path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    store.create_list("deny_accounts", "account", "accounts taken over")
    store.create_list("deny_countries", "country")
    app, _ = build(tmp_path, api_keys=f"{PRINCIPALS},vic:viewer:{VIEWER_KEY}")
    yield app, store
    store.close()


def _values(page: str) -> list[str]:
    return re.findall(r'<tr data-value="([^"]+)"', page)


def test_an_analyst_adds_and_removes_entries_in_their_name(gateway) -> None:
    app, store = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        token = csrf_of(client.get("/console/lists").text)
        added = client.post("/console/lists/deny_accounts/entries", data={
            "values": "acc-9, acc-7\nacc-8", "note": XSS, "csrf_token": token})
        again = client.post("/console/lists/deny_accounts/entries", data={
            "values": "acc-7,acc-6", "csrf_token": token})
        removed = client.post("/console/lists/deny_accounts/remove", data={
            "value": "acc-8", "csrf_token": token})
    assert "Added 3." in added.text and "Added 1; 1 already there." in again.text
    assert _values(removed.text) == ["acc-6", "acc-7", "acc-9"]
    assert "Entry removed." in removed.text
    assert [e.added_by for e in store.list_entry_page("deny_accounts")] == ["ana"] * 3
    assert "<script>window" not in added.text and "&lt;script&gt;window" in added.text
    assert store.get_list("deny_accounts").revision >= 3  # consumers see each change


@pytest.mark.parametrize(("values", "message"), [
    ("FR\nFrance", "nothing was added"),
    ("", "Give 1 to 1000 values"),
])
def test_a_bad_entry_adds_nothing_and_says_why(gateway, values: str, message: str) -> None:
    app, store = gateway
    with browser(app) as client:
        login(client, ANALYST_KEY)
        token = csrf_of(client.get("/console/lists").text)
        answer = client.post("/console/lists/deny_countries/entries", data={
            "values": values, "csrf_token": token})
        missing = client.post("/console/lists/no_such_list/entries", data={
            "values": "x", "csrf_token": token})
    assert answer.status_code in (400, 422) and message in answer.text
    assert store.list_entries("deny_countries") == []
    assert missing.status_code == 404


def test_only_an_admin_creates_lists(gateway) -> None:
    app, store = gateway
    with browser(app) as admin, browser(app) as analyst:
        assert login(admin, ADMIN_KEY).headers["location"] == "/console/lists"
        token = csrf_of(admin.get("/console/lists").text)
        created = admin.post("/console/lists", data={
            "name": "allow_devices", "kind": "device", "description": "known good",
            "csrf_token": token})
        bad = admin.post("/console/lists", data={"name": "Bad Name", "kind": "device",
                                                 "csrf_token": token})
        login(analyst, ANALYST_KEY)
        page = analyst.get("/console/lists").text
        refused = analyst.post("/console/lists", data={
            "name": "sneaky", "kind": "account", "csrf_token": csrf_of(page)})
    assert created.status_code == 200 and "allow_devices" in created.text
    assert store.get_list("allow_devices").kind == "device"
    assert bad.status_code == 400 and "lower case" in bad.text
    assert "New list" not in page and refused.status_code == 403
    assert "sneaky" not in {info.name for info in store.get_lists()}


def test_viewers_do_not_see_lists_and_forms_need_the_token(gateway) -> None:
    app, store = gateway
    with browser(app) as viewer, browser(app) as analyst:
        login(viewer, VIEWER_KEY)
        login(analyst, ANALYST_KEY)
        forged = analyst.post("/console/lists/deny_accounts/entries",
                              data={"values": "acc-1", "csrf_token": "guess"})
        assert viewer.get("/console/lists").status_code == 403
    assert forged.status_code == 403 and store.list_entries("deny_accounts") == []
