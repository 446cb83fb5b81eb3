"""What the case view shows about one alert, read from the store (`CaseView`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from fraudops.store import Alert, Decision, Label, LabelEntry, Store
from serving.gateway import queries

#: The account's stored transactions shown before the alert's.
HISTORY_ROWS = 20
#: Transaction fields shown first, in this order (any others follow, then `extra`).
FIELD_ORDER = ("transaction_id", "account_id", "timestamp", "amount", "currency",
               "merchant_id", "merchant_category", "channel", "country", "device_id")


@dataclass(frozen=True)
class HistoryRow:
    """One earlier transaction of the account and what was decided on it."""

    transaction_id: str
    event_time: datetime
    amount: float
    decision: str
    fraud_probability: float
    merchant: str


@dataclass(frozen=True)
class CaseView:
    alert: Alert
    fields: list[tuple[str, str]]
    reason_codes: list[str]
    model_version: str
    label: Label | None
    history: list[LabelEntry]
    account_history: list[HistoryRow] = field(default_factory=list)
    rules_fired: list[str] = field(default_factory=list)
    rule_set_version: str = ""

    @property
    def conflict(self) -> bool:
        """Analysts gave this transaction different verdicts."""
        return len({entry.label for entry in self.history}) > 1


def case_view(store: Store, transaction_id: str) -> CaseView:
    """The case of `transaction_id`; raises `NotFoundError` when it has no alert."""
    alert = store.get_alert(transaction_id)
    decision, label, history = queries.alert_details(store, transaction_id)
    rows = store.account_history(alert.account_id, before=alert.event_time,
                                 limit=HISTORY_ROWS, exclude=transaction_id)
    return CaseView(
        alert=alert, fields=_fields(decision), reason_codes=_codes(alert.reason_codes),
        model_version=decision.model_version if decision else "", label=label,
        history=history, account_history=[_history_row(row) for row in reversed(rows)],
        rules_fired=_codes(alert.rules_fired), rule_set_version=alert.rule_set_version)


def _fields(decision: Decision | None) -> list[tuple[str, str]]:
    """The stored transaction as (name, text) pairs, known fields first."""
    if decision is None:
        return []
    try:
        stored = json.loads(decision.transaction_json)
    except ValueError:
        return [("transaction (unreadable)", decision.transaction_json[:2000])]
    if not isinstance(stored, dict):
        return [("transaction", str(stored)[:2000])]
    extra = stored.pop("extra", None) or {}
    names = [n for n in FIELD_ORDER if n in stored] + sorted(set(stored) - set(FIELD_ORDER))
    pairs = [(name, _text(stored[name])) for name in names if stored[name] is not None]
    return pairs + [(f"extra.{name}", _text(value)) for name, value in sorted(extra.items())]


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _codes(text: str) -> list[str]:
    return [code.strip() for code in text.split(",") if code.strip()] if text else []


def _history_row(decision: Decision) -> HistoryRow:
    try:
        merchant = json.loads(decision.transaction_json).get("merchant_id") or ""
    except (ValueError, AttributeError):
        merchant = ""
    return HistoryRow(decision.transaction_id, decision.event_time, decision.amount,
                      decision.decision, decision.fraud_probability, str(merchant))
