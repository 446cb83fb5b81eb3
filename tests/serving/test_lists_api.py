"""`/v1/lists`: deny and allow lists through the gateway, on a real SQLite file and a real
PostgreSQL database (the app in process, as in `gateway_fakes`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gateway_fakes import ADMIN_KEY, ANALYST_KEY, INGEST_KEY, build, client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudops.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(tmp_path: Path, database_url: str):
    app, _ = build(tmp_path, database_url=database_url)
    with client(app, ADMIN_KEY) as admin:
        assert admin.put("/v1/lists/deny_accounts", json={"kind": "account"}).status_code == 200
        assert admin.put("/v1/lists/risky_countries", json={"kind": "country"}).status_code == 200
    return app


def test_add_list_page_and_remove_entries(app, database_url: str) -> None:
    with client(app, ANALYST_KEY) as ana:
        added = ana.post("/v1/lists/deny_accounts/entries",
                         json={"values": ["acc-2", "acc-1", " acc-3 "], "note": "mule ring"})
        again = ana.post("/v1/lists/deny_accounts/entries", json={"values": ["acc-1", "acc-4"]})
        first = ana.get("/v1/lists/deny_accounts/entries", params={"limit": 2}).json()
        rest = ana.get("/v1/lists/deny_accounts/entries",
                       params={"limit": 2, "after": first["next_after"]}).json()
        removed = ana.delete("/v1/lists/deny_accounts/entries/acc-2")
        missing = ana.delete("/v1/lists/deny_accounts/entries/acc-2")
        listed = ana.get("/v1/lists").json()
    assert added.status_code == 201, added.text
    assert added.json()["added"] == ["acc-2", "acc-1", "acc-3"]
    assert again.json()["added"] == ["acc-4"] and again.json()["already_present"] == ["acc-1"]
    assert [e["value"] for e in first["items"] + rest["items"]] == ["acc-1", "acc-2", "acc-3",
                                                                    "acc-4"]
    assert first["items"][0]["added_by"] == "ana" and first["items"][0]["note"] == "mule ring"
    assert removed.status_code == 204 and missing.status_code == 404
    deny = next(item for item in listed if item["name"] == "deny_accounts")
    assert (deny["kind"], deny["entries"], deny["revision"]) == ("account", 3, 3)
    store = Store.from_url(database_url)
    assert sorted(store.list_entries("deny_accounts")) == ["acc-1", "acc-3", "acc-4"]
    store.close()


def test_bad_entries_are_refused_with_the_value_and_nothing_is_added(app) -> None:
    with client(app, ANALYST_KEY) as ana:
        bad_country = ana.post("/v1/lists/risky_countries/entries",
                               json={"values": ["de", "Germany"]})
        bad_id = ana.post("/v1/lists/deny_accounts/entries", json={"values": ["ok-1", "a b"]})
        empty = ana.post("/v1/lists/deny_accounts/entries", json={"values": []})
        unknown_field = ana.post("/v1/lists/deny_accounts/entries",
                                 json={"values": ["x"], "added_by": "mallory"})
        no_list = ana.post("/v1/lists/nope/entries", json={"values": ["x"]})
        bad_name = ana.get("/v1/lists/Bad-Name")
        entries = ana.get("/v1/lists/deny_accounts/entries").json()["items"]
        countries = ana.get("/v1/lists/risky_countries/entries").json()["items"]
    assert bad_country.status_code == 422 and "'Germany' is not a country code" in \
        bad_country.json()["detail"]
    assert bad_id.status_code == 422 and "'a b'" in bad_id.json()["detail"]
    assert empty.status_code == 422 and unknown_field.status_code == 422
    assert no_list.status_code == 404 and bad_name.status_code == 422
    assert entries == [] and countries == []


def test_roles_and_kind_conflicts(app) -> None:
    with client(app, INGEST_KEY) as ingest:
        assert ingest.get("/v1/lists").status_code == 403
    with client(app, ANALYST_KEY) as ana:
        assert ana.put("/v1/lists/x_list", json={"kind": "device"}).status_code == 403
    with client(app, ADMIN_KEY) as admin:
        conflict = admin.put("/v1/lists/deny_accounts", json={"kind": "merchant"})
        bad_kind = admin.put("/v1/lists/y_list", json={"kind": "planet"})
        assert admin.get("/v1/lists/deny_accounts/entries").status_code == 403
    assert conflict.status_code == 409 and "holds account entries" in conflict.json()["detail"]
    assert bad_kind.status_code == 422


_ID_CHARS = st.characters(codec="utf-8")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.text(_ID_CHARS, min_size=1, max_size=20), min_size=1, max_size=5))
def test_any_value_is_either_stored_as_normalised_or_refused_whole(tmp_path: Path,
                                                                   values: list[str]) -> None:
    """Whatever the values, the answer is 201 (each stored exactly as the identifier rule
    normalises it) or 422 with nothing stored; never a 500."""
    app, _ = build(tmp_path / "h")
    with client(app, ADMIN_KEY) as admin:
        admin.put("/v1/lists/devices", json={"kind": "device"})
    with client(app, ANALYST_KEY) as ana:
        before = ana.get("/v1/lists/devices").json()["entries"]
        answer = ana.post("/v1/lists/devices/entries", json={"values": values})
        after = ana.get("/v1/lists/devices").json()["entries"]
    valid = all(re.fullmatch(r"[A-Za-z0-9_.:@/+-]{1,128}", v.strip()) for v in values)
    if valid:
        assert answer.status_code == 201, answer.text
        stored = set(answer.json()["added"]) | set(answer.json()["already_present"])
        assert stored == {v.strip() for v in values}
    else:
        assert answer.status_code == 422, answer.text
        assert after == before


def test_the_lists_api_is_documented(tmp_path: Path) -> None:
    app, _ = build(tmp_path, docs_enabled=True)
    with client(app, ANALYST_KEY) as ana:
        spec = ana.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/lists", "/v1/lists/{name}", "/v1/lists/{name}/entries",
            "/v1/lists/{name}/entries/{value}"} <= set(paths)
    add = paths["/v1/lists/{name}/entries"]["post"]
    assert {"201", "404", "422", "401", "403"} <= set(add["responses"])
    assert "EntriesIn" in spec["components"]["schemas"]
