"""Read queries of the gateway over the shared decision store (`fraudops.store`).

Two reads the repository does not offer yet: alerts filtered by event time and decision, and
an account's recent stored transactions (for `/v1/score`). Both use the store's own models and
engine; they belong in `fraudops.store.Store` once its owner adds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from fraudops.schema import Transaction
from fraudops.store import Alert, Decision, Label, Store


@dataclass(frozen=True)
class AlertFilter:
    """Filters of `GET /v1/alerts`; None means no filter."""

    since: datetime | None = None
    until: datetime | None = None
    account_id: str | None = None
    decision: str | None = None
    status: str | None = None


def list_alerts(store: Store, filters: AlertFilter, limit: int, offset: int) -> list[Alert]:
    """Alerts matching `filters`, newest event first, one page."""
    query = select(Alert).order_by(Alert.event_time.desc(), Alert.transaction_id)
    conditions = {
        "since": lambda v: Alert.event_time >= v, "until": lambda v: Alert.event_time < v,
        "account_id": lambda v: Alert.account_id == v, "decision": lambda v: Alert.decision == v,
        "status": lambda v: Alert.status == v,
    }
    for name, condition in conditions.items():
        value = getattr(filters, name)
        if value is not None:
            query = query.where(condition(value))
    with Session(store.engine) as session:
        return list(session.scalars(query.limit(limit).offset(offset)))


def alert_details(store: Store, transaction_id: str) -> tuple[Decision | None, Label | None]:
    """The stored decision (with the raw transaction) and the latest label of a transaction."""
    with Session(store.engine) as session:
        return session.get(Decision, transaction_id), session.get(Label, transaction_id)


def account_history(store: Store, account_id: str, before: datetime, limit: int,
                    exclude: str) -> list[Transaction]:
    """The account's last `limit` stored transactions before `before`, oldest first."""
    if limit <= 0:
        return []
    query = (select(Decision.transaction_json)
             .where(Decision.account_id == account_id, Decision.event_time <= before,
                    Decision.transaction_id != exclude)
             .order_by(Decision.event_time.desc(), Decision.transaction_id.desc()).limit(limit))
    with Session(store.engine) as session:
        rows = list(session.scalars(query))
    history = []
    for raw in reversed(rows):
        try:
            history.append(Transaction.model_validate_json(raw))
        except ValidationError:  # a row the consumer stored can still be unreadable: skip it
            continue
    return history


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    with store.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
