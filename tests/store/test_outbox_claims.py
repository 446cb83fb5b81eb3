"""Outbox claims (`Store.claim_notifications`): a pending row is held by one dispatcher for a
lease; nobody else gets it until the lease ends, the row is marked, or it is given back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fraudops.store import BatchWrite, NotificationRecord, NotificationStatus, Store

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def _outbox(store: Store, count: int, channel: str = "email") -> list[str]:
    rows = [NotificationRecord(dedupe_key=f"{channel}:tx-{i}", transaction_id=f"tx-{i}",
                               account_id="acc-1", channel=channel,
                               event_time=T0 + timedelta(minutes=i), payload="{}",
                               status=NotificationStatus.PENDING.value)
            for i in range(count)]
    store.write_batch(BatchWrite(notifications=rows))
    return [row.dedupe_key for row in rows]


def _keys(rows: list) -> list[str]:
    return [row.dedupe_key for row in rows]


def test_a_claimed_row_is_nobody_elses_until_its_lease_ends(store: Store) -> None:
    keys = _outbox(store, 5)
    now = datetime.now(UTC)
    first = store.claim_notifications("a", lease=LEASE, limit=3, now=now)
    assert _keys(first) == keys[:3]  # oldest events first
    assert {(row.claimed_by, row.claimed_until) for row in first} == {("a", now + LEASE)}
    assert _keys(store.claim_notifications("b", lease=LEASE, limit=10, now=now)) == keys[3:]
    assert store.claim_notifications("c", lease=LEASE, limit=10, now=now) == []
    later = now + LEASE + timedelta(seconds=1)  # "a" and "b" died: their leases ran out
    assert _keys(store.claim_notifications("c", lease=LEASE, limit=10, now=later)) == keys


def test_marking_or_giving_back_ends_the_claim(store: Store) -> None:
    keys = _outbox(store, 3)
    claimed = store.claim_notifications("a", lease=LEASE, limit=10)
    store.mark_notification(keys[0], NotificationStatus.SENT)
    store.mark_notification(keys[1], NotificationStatus.PENDING, "SMTP 451")  # to retry
    assert store.release_notifications("b", [keys[2]]) == 0  # not b's to give back
    assert store.release_notifications("a", [keys[2]]) == 1
    again = store.claim_notifications("b", lease=LEASE, limit=10)
    assert _keys(again) == keys[1:] and len(claimed) == 3
    assert again[0].attempts == 1 and again[0].last_error == "SMTP 451"
    assert {n.dedupe_key: n.claimed_by for n in store.notifications()} == {
        keys[0]: None, keys[1]: "b", keys[2]: "b"}


def test_only_the_asked_channels_are_claimed(store: Store) -> None:
    emails, hooks = _outbox(store, 2), _outbox(store, 2, "webhook")
    assert _keys(store.claim_notifications("a", lease=LEASE, limit=10,
                                           channels=["webhook"])) == hooks
    assert _keys(store.claim_notifications("a", lease=LEASE, limit=10, channels=[])) == []
    assert _keys(store.claim_notifications("a", lease=LEASE, limit=10)) == emails
