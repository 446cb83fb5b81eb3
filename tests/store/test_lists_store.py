"""The store's deny and allow lists and the rule columns of decisions, on SQLite and
PostgreSQL (the `store` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text

from fraudops.rules import ListEntryError
from fraudops.store import BatchWrite, DecisionRecord, NotFoundError, Store
from fraudops.store.migrate import VERSION_TABLE


def test_revisions_move_with_every_change_and_only_then(store: Store) -> None:
    store.ensure_lists({"deny_accounts": "account", "risky_countries": "country"})
    assert store.list_revisions() == {"deny_accounts": 0, "risky_countries": 0}
    assert store.add_list_entries("risky_countries", ["ng", " RU "]) == ["NG", "RU"]
    assert store.add_list_entries("risky_countries", ["NG"]) == []  # nothing new: no bump
    assert store.remove_list_entry("risky_countries", "XX") is False
    assert store.remove_list_entry("risky_countries", "not a code") is False
    assert store.list_revisions()["risky_countries"] == 1
    assert store.remove_list_entry("risky_countries", "ru") is True
    assert store.list_revisions() == {"deny_accounts": 0, "risky_countries": 2}
    assert store.list_entries("risky_countries") == ["NG"]
    info = {i.name: i for i in store.get_lists()}
    assert (info["risky_countries"].entries, info["risky_countries"].kind) == (1, "country")


def test_bad_values_and_kinds_are_refused_whole(store: Store) -> None:
    store.create_list("devices", "device")
    with pytest.raises(ListEntryError, match="'a b' is not a valid device id"):
        store.add_list_entries("devices", ["ok", "a b"])
    assert store.list_entries("devices") == []
    with pytest.raises(ListEntryError, match="holds device entries, not account"):
        store.ensure_lists({"devices": "account"})
    with pytest.raises(ListEntryError, match="must match"):
        store.create_list("Bad Name", "device")
    with pytest.raises(NotFoundError):
        store.add_list_entries("missing", ["x"])


def test_pages_by_value_with_a_prefix(store: Store) -> None:
    store.create_list("accounts", "account")
    store.add_list_entries("accounts", [f"acc-{i:02d}" for i in range(12)] + ["b_1", "acc_x"],
                           added_by="ana")
    first = store.list_entry_page("accounts", limit=5, prefix="acc-")
    rest = store.list_entry_page("accounts", limit=50, after=first[-1].value, prefix="acc-")
    assert [e.value for e in first + rest] == [f"acc-{i:02d}" for i in range(12)]
    assert [e.value for e in store.list_entry_page("accounts", prefix="acc_")] == ["acc_x"]
    assert first[0].added_by == "ana"


def test_a_store_from_before_rules_gains_the_columns(store: Store) -> None:
    """A store from before migrations (no version table) and before the rules: upgrading it
    (`create_schema`) adds the rule columns to the decisions and alerts tables; old rows read
    as "no rules"."""
    with store.engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {VERSION_TABLE}"))
        for table in ("decisions", "alerts"):
            connection.execute(text(f"ALTER TABLE {table} DROP COLUMN rules_fired"))
            connection.execute(text(f"ALTER TABLE {table} DROP COLUMN rule_set_version"))
        connection.execute(text(
            "INSERT INTO decisions (transaction_id, account_id, event_time, amount, "
            "fraud_probability, anomaly_score, decision, reason_codes, model_version, "
            "transaction_json, scored_at) VALUES ('old', 'a', :t, 1.0, 0.1, 0.1, 'approve', "
            "'', '', '{}', :t)"), {"t": datetime(2026, 1, 1, tzinfo=UTC)})
    store.create_schema()
    store.create_schema()  # idempotent
    columns = {c["name"] for c in inspect(store.engine).get_columns("alerts")}
    assert {"rules_fired", "rule_set_version"} <= columns
    old = store.decided(["old"])["old"]
    assert (old.rules_fired, old.rule_set_version) == ("", "")
    store.write_batch(BatchWrite(decisions=[DecisionRecord(
        "new", "a", datetime(2026, 1, 2, tzinfo=UTC), 5.0, 0.9, 0.1, "block", "{}",
        rules_fired="r1,r2", rule_set_version="v7")]))
    assert store.get_alert("new").rules_fired == "r1,r2"
    assert store.decided(["new"])["new"].rule_set_version == "v7"
