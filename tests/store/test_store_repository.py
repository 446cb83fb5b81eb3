"""The decision store against SQLite (a file) and the local PostgreSQL server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fraudops.store import (
    AlertStatus,
    BatchWrite,
    CheckpointRecord,
    DecisionRecord,
    LabelRecord,
    NotFoundError,
    NotificationRecord,
    NotificationStatus,
    StaleCheckpointError,
    Store,
    UnsupportedDatabaseError,
    bulk,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def decision(tx: str, kind: str = "approve", account: str = "acc-1", minutes: int = 0,
             probability: float = 0.1) -> DecisionRecord:
    return DecisionRecord(
        transaction_id=tx, account_id=account, event_time=T0 + timedelta(minutes=minutes),
        amount=12.5, fraud_probability=probability, anomaly_score=0.3, decision=kind,
        transaction_json=f'{{"transaction_id": "{tx}"}}', reason_codes="amount_log",
        model_version="lstm:3,ae:2",
    )


def notification(tx: str, account: str = "acc-1", channel: str = "email") -> NotificationRecord:
    return NotificationRecord(dedupe_key=f"{channel}:{tx}", transaction_id=tx, account_id=account,
                              channel=channel, event_time=T0, payload="{}")


def test_write_batch_is_idempotent(store: Store) -> None:
    batch = BatchWrite(decisions=[decision("t1"), decision("t2", "review"), decision("t3", "block")],
                       notifications=[notification("t2"), notification("t3")])
    store.write_batch(batch)
    store.write_batch(batch)  # a replay after a crash
    assert store.counts() == {"decisions": 3, "alerts": 2, "notifications": 2, "labels": 0}


def test_replay_keeps_first_decision(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[decision("t1", "review", probability=0.7)]))
    store.write_batch(BatchWrite(decisions=[decision("t1", "approve", probability=0.2)]))
    stored = store.get_decision("t1")
    assert stored is not None
    assert (stored.decision, stored.fraud_probability) == ("review", 0.7)
    assert stored.event_time == T0 and stored.event_time.tzinfo is not None


def test_alerts_listing_filters_and_status(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[
        decision("a", "review", minutes=1), decision("b", "block", "acc-2", minutes=2),
        decision("c", "approve", minutes=3)]))
    assert [a.transaction_id for a in store.list_alerts()] == ["b", "a"]
    assert [a.transaction_id for a in store.list_alerts(account_id="acc-1")] == ["a"]
    store.set_alert_status("a", AlertStatus.DISMISSED)
    assert [a.transaction_id for a in store.list_alerts(status="open")] == ["b"]
    assert store.get_alert("a").status == "dismissed"
    with pytest.raises(NotFoundError):
        store.get_alert("c")
    with pytest.raises(NotFoundError):
        store.set_alert_status("missing", "dismissed")


def test_labels_join_stored_transactions(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[decision("t1", "review"), decision("t2")]))
    store.add_labels([LabelRecord("t1", 0), LabelRecord("t2", 1, analyst="ana"),
                      LabelRecord("unknown", 1)])
    store.add_labels([LabelRecord("t1", 1, source="gateway")])  # a correction wins
    rows = {row.transaction_id: row for row in store.labelled_transactions()}
    assert set(rows) == {"t1", "t2"}
    assert (rows["t1"].label, rows["t1"].label_source) == (1, "gateway")
    assert rows["t2"].transaction_json == '{"transaction_id": "t2"}'
    assert store.counts()["labels"] == 3
    with pytest.raises(ValueError):
        LabelRecord("t1", 2)


def test_checkpoint_keeps_snapshot_until_replaced(store: Store) -> None:
    store.write_batch(BatchWrite(checkpoints=[CheckpointRecord("g", "tx", 0, 10, 10, b"s10")]))
    store.write_batch(BatchWrite(checkpoints=[
        CheckpointRecord("g", "tx", 0, 25, expected_offset=10), CheckpointRecord("g", "tx", 1, 4)]))
    stored = store.load_checkpoints("g", "tx")
    assert (stored[0].next_offset, stored[0].snapshot_offset, stored[0].snapshot) == (25, 10, b"s10")
    assert (stored[1].next_offset, stored[1].snapshot) == (4, None)
    assert store.load_checkpoints("other", "tx") == {}


def state_checkpoint(next_offset: int, expected: int | None, state: dict,
                     replace: bool = False) -> CheckpointRecord:
    return CheckpointRecord("g", "tx", 0, next_offset, next_offset, b"header",
                            expected_offset=expected, state=state, replace_state=replace)


def test_state_entries_are_upserted_replaced_and_fenced(store: Store) -> None:
    acc, dev = ("account", "acc-1"), ("velocity.device", "d-1")
    store.write_batch(BatchWrite(checkpoints=[state_checkpoint(10, None, {acc: b"a1", dev: b"d1"})]))
    store.write_batch(BatchWrite(checkpoints=[state_checkpoint(20, 10, {acc: b"a2"})]))
    assert sorted(store.load_state("g", "tx", 0)) == [
        ("account", "acc-1", b"a2"), ("velocity.device", "d-1", b"d1")]
    with pytest.raises(StaleCheckpointError):  # a zombie's entries are not written either
        store.write_batch(BatchWrite(checkpoints=[state_checkpoint(30, 10, {acc: b"zombie"})]))
    assert {(k, e): v for k, e, v in store.load_state("g", "tx", 0)}[acc] == b"a2"
    other = ("account", "acc-2")
    store.write_batch(BatchWrite(checkpoints=[state_checkpoint(30, 20, {other: b"x"}, True)]))
    assert store.load_state("g", "tx", 0) == [("account", "acc-2", b"x")]
    assert store.load_state("g", "tx", 1) == [] and store.load_state("h", "tx", 0) == []


@pytest.mark.parametrize("expected", [None, 10, 30])
def test_stale_checkpoint_rolls_back_the_batch(store: Store, expected: int | None) -> None:
    store.write_batch(BatchWrite(checkpoints=[CheckpointRecord("g", "tx", 0, 25, 25, b"s")]))
    zombie = BatchWrite(decisions=[decision("z1", "block")], notifications=[notification("z1")],
                        checkpoints=[CheckpointRecord("g", "tx", 0, 40, expected_offset=expected)])
    with pytest.raises(StaleCheckpointError):
        store.write_batch(zombie)
    assert store.counts() == {"decisions": 0, "alerts": 0, "notifications": 0, "labels": 0}
    assert store.load_checkpoints("g", "tx")[0].next_offset == 25


def test_before_commit_failure_rolls_the_batch_back(store: Store) -> None:
    calls = []

    def broker_refused() -> None:
        calls.append(store.counts()["decisions"])  # another session: nothing visible yet
        raise RuntimeError("records not acknowledged")

    batch = BatchWrite(decisions=[decision("t1", "block")], notifications=[notification("t1")],
                       checkpoints=[CheckpointRecord("g", "tx", 0, 1)])
    with pytest.raises(RuntimeError, match="not acknowledged"):
        store.write_batch(batch, before_commit=broker_refused)
    assert calls == [0]
    assert store.counts() == {"decisions": 0, "alerts": 0, "notifications": 0, "labels": 0}
    assert store.load_checkpoints("g", "tx") == {}
    store.write_batch(batch, before_commit=lambda: calls.append("acked"))
    assert calls[-1] == "acked" and store.counts()["alerts"] == 1
    assert store.get_alert("t1").status == AlertStatus.OPEN


def raw_rows(store: Store, table: str, key: str, leave_out: tuple[str, ...]) -> list[tuple]:
    """A table's rows as the driver returns them (no SQLAlchemy result processing), without
    their key column and the `leave_out` ones, in key order."""
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {key}")
        names = list(rows.keys())
        return [tuple(v for n, v in zip(names, row, strict=True)
                      if n != key and n not in leave_out) for row in rows]


@pytest.mark.parametrize("copy_min_rows", [bulk.COPY_MIN_ROWS, 1], ids=["default", "copy"])
def test_batch_rows_match_what_core_inserts(store: Store, copy_min_rows: int,
                                            monkeypatch) -> None:
    """The batch write's driver-level executemany (and, on PostgreSQL, its binary COPY: every
    batch with the threshold at 1) stores the very values SQLAlchemy Core's insert of the same
    records does (bind processors, defaults, NULLs, -0.0, 1e-300, other time zones): each
    record written once each way, under another key, then the raw rows compared."""
    from sqlalchemy import insert

    from fraudops.store.models import Alert, Decision, Notification

    monkeypatch.setattr(bulk, "COPY_MIN_ROWS", copy_min_rows)
    scored = datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    decisions = [replace(decision("t1", "block", minutes=3), scored_at=scored, amount=-0.0,
                         rules_fired="r1,r2", rule_set_version="v1"),
                 replace(decision("t2", "review", probability=1e-300), scored_at=scored)]
    notifications = [notification("t1"), replace(notification("t2", channel="webhook"),
                                                 status="rate_limited")]
    now = datetime(2026, 3, 2, tzinfo=UTC)
    store.write_batch(BatchWrite(decisions=[replace(d, transaction_id="a-" + d.transaction_id)
                                            for d in decisions],
                                 notifications=[replace(n, dedupe_key="a-" + n.dedupe_key)
                                                for n in notifications]))
    with store.engine.begin() as connection:
        rows = [{k: v for k, v in vars(d).items() if k != "source"} for d in decisions]
        connection.execute(insert(Decision), [r | {"transaction_id": "b-" + r["transaction_id"]}
                                              for r in rows])
        alert_columns = {c.key for c in Alert.__table__.columns}
        connection.execute(insert(Alert), [
            {k: v for k, v in r.items() if k in alert_columns}
            | {"transaction_id": "b-" + r["transaction_id"], "created_at": now,
               "updated_at": now} for r in rows])
        connection.execute(insert(Notification), [
            vars(n) | {"dedupe_key": "b-" + n.dedupe_key, "created_at": now}
            for n in notifications])
    for table, key, stamps in (("decisions", "transaction_id", ()),
                               ("alerts", "transaction_id", ("created_at", "updated_at")),
                               ("notifications", "dedupe_key", ("created_at",))):
        # (the batch stamps its own write time: everything else is compared)
        rows = raw_rows(store, table, key, stamps)
        assert len(rows) == 4, table
        assert rows[:2] == rows[2:], table


def test_notification_outbox(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[decision("t1", "block")],
                                 notifications=[notification("t1"),
                                                notification("t1", channel="webhook")]))
    pending = store.notifications(status="pending")
    assert {n.dedupe_key for n in pending} == {"email:t1", "webhook:t1"}
    store.mark_notification("email:t1", NotificationStatus.SENT)
    store.mark_notification("webhook:t1", NotificationStatus.FAILED, "HTTP 500")
    sent, = store.notifications(status="sent")
    assert sent.attempts == 1 and sent.sent_at is not None
    failed, = store.notifications(status="failed")
    assert failed.last_error == "HTTP 500"
    assert store.notifications(account_ids=["acc-1"], since=T0 + timedelta(seconds=1)) == []


def test_scored_window(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[decision(f"t{i}", minutes=i) for i in range(5)]))
    window = store.scored_window(T0 + timedelta(minutes=1), T0 + timedelta(minutes=4))
    assert [d.transaction_id for d in window] == ["t1", "t2", "t3"]


def test_unsupported_database() -> None:
    with pytest.raises(UnsupportedDatabaseError):
        Store.from_url("mysql://localhost/x")


def test_alert_filters_history_label_ping(store: Store) -> None:
    store.write_batch(BatchWrite(decisions=[
        decision("a", "review", minutes=1), decision("b", "block", minutes=2),
        decision("c", "approve", minutes=3), decision("d", "block", "acc-2", minutes=4)]))
    assert [a.transaction_id for a in store.list_alerts(decision="block")] == ["d", "b"]
    assert [a.transaction_id for a in store.list_alerts(
        since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))] == ["b"]
    history = store.account_history("acc-1", before=T0 + timedelta(minutes=3), limit=2,
                                    exclude="c")
    assert [d.transaction_id for d in history] == ["a", "b"]
    assert store.account_history("acc-1", before=T0, limit=0) == []
    assert store.get_label("a") is None
    store.add_labels([LabelRecord("a", 1, analyst="ana")])
    assert store.get_label("a").analyst == "ana"
    store.ping()
