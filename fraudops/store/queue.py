"""The analysts' alert queue: alerts by risk, filtered, one keyset page at a time.

Sorted by fraud probability, highest first (ties by transaction id, also descending, so that
the whole order is one direction and a page's position is a row-value comparison an index can
seek to). A page ends with a `QueueCursor` (the last row's probability and id); the next page
starts strictly after it, so a deep page costs what the first does, whatever the offset, and
alerts that arrive meanwhile never shift or repeat rows (OFFSET pagination does both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from fraudops.store.models import Alert
from fraudops.store.repository import Store


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows; None means no filter. Times bound the event time
    (``since <= event_time < until``), amounts the amount (``min <= amount <= max``)."""

    status: str | None = "open"
    decision: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    account_id: str | None = None
    #: A rule id: only alerts on which this rule fired.
    rule: str | None = None


@dataclass(frozen=True)
class QueueCursor:
    """Where a page ended: the last alert's fraud probability and transaction id."""

    fraud_probability: float
    transaction_id: str


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue and the cursor of the next (None on the last page)."""

    alerts: list[Alert]
    next_cursor: QueueCursor | None


def alert_queue(store: Store, filters: QueueFilter, limit: int,
                after: QueueCursor | None = None) -> QueuePage:
    """One page of alerts matching `filters`, riskiest first, starting after `after`."""
    order = (Alert.fraud_probability.desc(), Alert.transaction_id.desc())
    query = select(Alert).where(*_conditions(filters)).order_by(*order).limit(limit + 1)
    if after is not None:
        query = query.where(tuple_(Alert.fraud_probability, Alert.transaction_id)
                            < tuple_(after.fraud_probability, after.transaction_id))
    with Session(store.engine) as session:
        rows = list(session.scalars(query))
    if len(rows) <= limit:  # one row more than a page was asked for: is there a next page?
        return QueuePage(rows, None)
    last = rows[limit - 1]
    return QueuePage(rows[:limit], QueueCursor(last.fraud_probability, last.transaction_id))


def _conditions(filters: QueueFilter) -> list:
    conditions = []
    for column, value in ((Alert.status, filters.status), (Alert.decision, filters.decision),
                          (Alert.account_id, filters.account_id)):
        if value is not None:
            conditions.append(column == value)
    bounds = ((filters.since, Alert.event_time.__ge__), (filters.until, Alert.event_time.__lt__),
              (filters.min_amount, Alert.amount.__ge__),
              (filters.max_amount, Alert.amount.__le__))
    conditions.extend(compare(value) for value, compare in bounds if value is not None)
    if filters.rule is not None:  # rules_fired is "id1,id2": match one whole id, _ literally
        fired = literal(",") + Alert.rules_fired + literal(",")
        conditions.append(fired.contains(f",{filters.rule},", autoescape=True))
    return conditions
