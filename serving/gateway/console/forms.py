"""The queue's filters as the page's form sends them (query parameters), checked.

Every field arrives as text (an empty field means no filter); a bad one raises
`ConsoleRefusal` (400) naming the field, so the analyst sees what to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fraudops.rules.schema import RULE_ID
from fraudops.schema import ALERT_DECISIONS, MAX_AMOUNT
from fraudops.store import AlertStatus
from fraudops.store.queue import QueueCursor, QueueFilter
from serving.gateway.console.auth import ConsoleRefusal

#: Statuses the queue offers; "any" shows every status.
STATUSES = ("open", "confirmed_fraud", "dismissed", "any")
#: The fields of the filter form (and of the links that keep them).
FIELDS = ("status", "decision", "since", "until", "min_amount", "max_amount", "account_id",
          "rule")
_ID = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,128}$")
_RULE = re.compile(RULE_ID)


@dataclass(frozen=True)
class QueueForm:
    """The form's values as typed (to fill it again) and the filter they mean."""

    values: dict[str, str]
    filters: QueueFilter
    after: QueueCursor | None

    def link(self, after: QueueCursor | None = None) -> str:
        """The query string of this view (from the start, or after `after`)."""
        params = {k: v for k, v in self.values.items() if v}
        if after is not None:
            params["after"] = encode_cursor(after)
        return urlencode(params)


def parse_queue_form(query: Mapping[str, str]) -> QueueForm:
    """The filters of a queue request; raises `ConsoleRefusal` (400) for a bad field."""
    values = {name: (query.get(name) or "").strip() for name in FIELDS}
    values["status"] = values["status"] or "open"
    status = _choice(values["status"], STATUSES, "status")
    filters = QueueFilter(
        status=None if status == "any" else AlertStatus(status).value,
        decision=_choice(values["decision"], ALERT_DECISIONS, "decision") or None,
        since=_time(values["since"], "since"), until=_time(values["until"], "until"),
        min_amount=_amount(values["min_amount"], "min_amount"),
        max_amount=_amount(values["max_amount"], "max_amount"),
        account_id=_identifier(values["account_id"], "account_id"),
        rule=_rule(values["rule"]))
    after = query.get("after")
    return QueueForm(values, filters, decode_cursor(after) if after else None)


def encode_cursor(cursor: QueueCursor) -> str:
    # repr() of a float reads back as the same float: the next page starts exactly there.
    return f"{cursor.fraud_probability!r}:{cursor.transaction_id}"


def decode_cursor(text: str) -> QueueCursor:
    probability, _, transaction_id = text.partition(":")
    try:
        value = float(probability)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not _ID.match(transaction_id):
        raise ConsoleRefusal(400, "The page link is damaged (after=...); start from the "
                                  "first page.")
    return QueueCursor(value, transaction_id)


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value and value not in allowed:
        raise ConsoleRefusal(400, f"{name} must be one of {', '.join(allowed)}.")
    return value


def _time(value: str, name: str) -> datetime | None:
    """A time from the form (``datetime-local`` inputs send no zone: read as UTC)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConsoleRefusal(400, f"{name} must be a date and time like "
                                  "2026-01-31T12:00 (UTC).") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _amount(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        amount = float(value)
    except ValueError:
        amount = math.nan
    if not 0.0 <= amount <= MAX_AMOUNT:  # NaN fails this too
        raise ConsoleRefusal(400, f"{name} must be a number from 0 to {MAX_AMOUNT:,.0f}.")
    return amount


def _rule(value: str) -> str | None:
    if value and not _RULE.match(value):
        raise ConsoleRefusal(400, "rule must be a rule id: a letter or digit, then letters, "
                                  "digits and _.:- (at most 64).")
    return value or None


def _identifier(value: str, name: str) -> str | None:
    if value and not _ID.match(value):
        raise ConsoleRefusal(400, f"{name} may hold letters, digits and _.:@/+- only "
                                  "(at most 128).")
    return value or None
