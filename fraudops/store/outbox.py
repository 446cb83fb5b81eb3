"""Claims on the notification outbox (`Notification`), mixed into `Store`.

Every consumer runs a dispatcher over the same outbox. A dispatcher first claims pending rows
for a lease, in one ``UPDATE ... RETURNING`` that takes only rows nobody holds (never claimed,
or whose lease ran out), then sends what it got: two dispatchers never send the same row at
the same time, and the rows of one that died are taken by another once its lease is over.
PostgreSQL picks the rows with ``FOR UPDATE SKIP LOCKED`` in a CTE (a concurrent claimer skips
them instead of waiting) and the outer ``WHERE`` repeats the conditions, so a row that another
transaction claimed in between is not claimed twice; SQLite runs one writer at a time.
Marking a row (`Store.mark_notification`) ends its claim. A claim first looks for a free row
with a plain read, so an empty outbox costs no write (and, on SQLite, no write lock that the
consumer's next batch would have to wait for).

Lease times are the claimer's clock (UTC), like every time the store writes: the consumers'
clocks are assumed to agree to well within a lease.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker

from fraudops.store.models import Notification, NotificationStatus, utcnow


class OutboxMixin:
    """Outbox claim methods of `Store` (which provides `_sessions`)."""

    _sessions: sessionmaker[Any]

    def claim_notifications(self, owner: str, *, lease: timedelta, limit: int,
                            channels: Collection[str] | None = None,
                            now: datetime | None = None) -> list[Notification]:
        """Claim up to `limit` pending rows nobody holds (of `channels`, when given) for
        `owner` until ``now + lease``; returns them by event time. Empty when there are none
        or every one is held."""
        now = now or utcnow()
        free = [Notification.status == NotificationStatus.PENDING.value,
                or_(Notification.claimed_until.is_(None), Notification.claimed_until < now)]
        if channels is not None:
            free.append(Notification.channel.in_(list(channels)))
        # Look before claiming: the dispatcher wakes after every batch the consumer commits,
        # and an UPDATE takes SQLite's write lock even when it matches nothing.
        with self._sessions() as session:
            if session.scalar(select(Notification.dedupe_key).where(*free).limit(1)) is None:
                return []
        # A CTE, not ``IN (subquery)``: PostgreSQL may run a subquery once per row it checks,
        # and with SKIP LOCKED each run can pick other rows (more than `limit` got claimed).
        chosen = (select(Notification.dedupe_key).where(*free)
                  .order_by(Notification.event_time, Notification.dedupe_key).limit(limit)
                  .with_for_update(skip_locked=True).cte("chosen"))
        statement = (update(Notification)
                     .where(Notification.dedupe_key == chosen.c.dedupe_key, *free)
                     .values(claimed_by=owner, claimed_until=now + lease)
                     .returning(Notification)
                     .execution_options(synchronize_session=False))
        with self._sessions.begin() as session:
            rows = list(session.scalars(statement))
        return sorted(rows, key=lambda row: (row.event_time, row.dedupe_key))

    def release_notifications(self, owner: str, dedupe_keys: Collection[str]) -> int:
        """End `owner`'s claims on these rows (left unsent) so any dispatcher may take them
        now; returns how many it held."""
        if not dedupe_keys:
            return 0
        statement = (update(Notification)
                     .where(Notification.dedupe_key.in_(list(dedupe_keys)),
                            Notification.claimed_by == owner)
                     .values(claimed_by=None, claimed_until=None)
                     .execution_options(synchronize_session=False))
        with self._sessions.begin() as session:
            return session.execute(statement).rowcount
