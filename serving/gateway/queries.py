"""The gateway's reads over the shared decision store (`fraudops.store.Store`).

Thin adapters from the routers' shapes to the store's methods; the only logic here is turning
stored raw transactions back into `Transaction`s for `/v1/score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from fraudops.schema import Transaction
from fraudops.store import Alert, Decision, Label, LabelEntry, Store


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
    return store.list_alerts(status=filters.status, account_id=filters.account_id,
                             decision=filters.decision, since=filters.since,
                             until=filters.until, limit=limit, offset=offset)


def alert_details(store: Store, transaction_id: str
                  ) -> tuple[Decision | None, Label | None, list[LabelEntry]]:
    """The stored decision (with the raw transaction), the current verdict and every label
    given to a transaction (oldest first)."""
    return (store.get_decision(transaction_id), store.get_label(transaction_id),
            store.label_history(transaction_id))


def account_history(store: Store, account_id: str, before: datetime, limit: int,
                    exclude: str) -> list[Transaction]:
    """The account's last `limit` stored transactions before `before`, oldest first."""
    history = []
    for row in store.account_history(account_id, before=before, limit=limit, exclude=exclude):
        try:
            history.append(Transaction.model_validate_json(row.transaction_json))
        except ValidationError:  # a row the consumer stored can still be unreadable: skip it
            continue
    return history


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    store.ping()
