"""The gateway's reads over the shared decision store (`fraudops.store.Store`).

Thin adapters from the routers' shapes to the store's methods; the only logic here is turning
stored raw transactions back into `Transaction`s, and reading the labels their replay needs, for
`/v1/score`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from fraudops.schema import Transaction, TransactionLabel
from fraudops.store import Alert, Decision, Label, LabelEntry, Store
from serving.gateway.scoring import LABEL_LIMIT, LabelScope

log = logging.getLogger(__name__)


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


def scope_labels(store: Store, scope: LabelScope) -> list[TransactionLabel]:
    """The labels of `scope` with their transactions' keys, oldest first (at most the latest
    `LABEL_LIMIT`: a warning says when more were known)."""
    labels, truncated = store.entity_labels(
        since=scope.since, before=scope.before, accounts=scope.accounts,
        merchants=scope.merchants, devices=scope.devices, limit=LABEL_LIMIT)
    if truncated:
        log.warning("scoring with the latest %d labels only (account %s)", LABEL_LIMIT,
                    next(iter(scope.accounts), ""))
    return labels


def ping(store: Store) -> None:
    """Raise unless the database answers."""
    store.ping()
