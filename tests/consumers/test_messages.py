"""Poison-message classification and the dead-letter record."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from consumer_helpers import tx_doc

from consumers.exceptions import PoisonMessageError
from consumers.messages import (
    REASON_ABSURD,
    REASON_EMPTY,
    REASON_INVALID_JSON,
    REASON_OVERSIZED,
    REASON_PROCESSING,
    REASON_SCHEMA,
    Incoming,
    dead_letter,
    decision_message,
    parse_label,
    parse_transaction,
    stored_decision_message,
    unexpected_error,
)
from fraudops.store import DecisionRecord


def encoded(**changes: object) -> bytes:
    doc = tx_doc(1)
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_valid_transaction_parses() -> None:
    tx = parse_transaction(encoded(), 4096)
    assert (tx.transaction_id, tx.amount, tx.timestamp.tzinfo is not None) == ("tx-1", 20.0, True)


@pytest.mark.parametrize(("value", "reason"), [
    (None, REASON_EMPTY),
    (b"", REASON_EMPTY),
    (b"x" * 5000, REASON_OVERSIZED),
    (b'{"transaction_id": "tx-1", ', REASON_INVALID_JSON),
    (b"\xff\xfe not utf-8", REASON_INVALID_JSON),
    (b"[1, 2, 3]", REASON_SCHEMA),
    (encoded(account_id=None), REASON_SCHEMA),
    (encoded(unexpected_field=1), REASON_SCHEMA),
    (encoded(timestamp="2026-03-01T09:00:00"), REASON_SCHEMA),  # no timezone
    (encoded(amount=-5), REASON_ABSURD),
    (encoded(amount=1e12), REASON_ABSURD),
    (encoded(timestamp="2999-01-01T00:00:00Z"), REASON_ABSURD),
    # at the edge of the calendar with an offset: UTC would be year 10000 or year 0
    (encoded(timestamp="9999-12-31T23:30:00-05:00"), REASON_ABSURD),
    (encoded(timestamp="0001-01-01T00:30:00+05:00"), REASON_ABSURD),
    (encoded(timestamp="9999-12-31T23:59:59.999999-23:59"), REASON_ABSURD),
    (encoded(timestamp="0001-01-01T00:00:00+23:59"), REASON_ABSURD),
    (b'{"transaction_id":"a","account_id":"b","timestamp":"2026-01-01T00:00:00Z","amount":NaN}',
     REASON_ABSURD),
])
def test_poison_reasons(value: bytes | None, reason: str) -> None:
    with pytest.raises(PoisonMessageError) as caught:
        parse_transaction(value, 4096)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_labels() -> None:
    label = parse_label(b'{"transaction_id": "tx-1", "label": 1, "analyst": "ana"}', 4096)
    assert (label.transaction_id, label.label, label.analyst) == ("tx-1", 1, "ana")
    with pytest.raises(PoisonMessageError) as caught:
        parse_label(b'{"transaction_id": "tx-1", "label": 7}', 4096)
    assert caught.value.reason == REASON_ABSURD


def test_dead_letter_keeps_original_bytes_and_reason() -> None:
    original = Incoming("transactions", 2, 41, b"acc-9", b"\x00garbage")
    error = PoisonMessageError(REASON_INVALID_JSON, "not JSON", error_type="ValidationError")
    out = dead_letter(original, error, "transactions-dlq")
    headers = dict(out.headers)
    assert (out.topic, out.key, out.value) == ("transactions-dlq", b"acc-9", b"\x00garbage")
    assert headers["dlq.reason"] == b"invalid_json"
    assert headers["dlq.source"] == b"transactions/2/41"
    assert headers["dlq.error"] == b"ValidationError"


def test_unexpected_errors_are_dead_lettered_with_their_type() -> None:
    error = unexpected_error(ZeroDivisionError("division by zero \udc80"))
    assert (error.reason, error.error_type) == (REASON_PROCESSING, "ZeroDivisionError")
    out = dead_letter(Incoming("transactions", 0, 1, None, None), error, "dlq")
    headers = dict(out.headers)
    assert headers["dlq.error"] == b"ZeroDivisionError" and out.value == b""
    assert headers["dlq.detail"] == b"division by zero \\udc80"  # never a UnicodeEncodeError


def test_stored_decision_republishes_the_same_bytes() -> None:
    decided = datetime(2026, 3, 1, 9, 0, 1, 250, tzinfo=UTC)
    decision = DecisionRecord("tx-1", "acc-1", datetime(2026, 3, 1, 9, tzinfo=UTC), 20.5,
                              0.8125, 1.5, "review", "{}", "amount_log,account_gap_log",
                              "lstm:3", scored_at=decided)
    original = decision_message(decision, decided.isoformat(), ("amount_log", "account_gap_log"),
                                "fraud-decisions", json.dumps("lstm:3"))
    assert stored_decision_message(decision, "fraud-decisions") == original
    without_codes = replace(decision, reason_codes="")
    assert json.loads(stored_decision_message(without_codes, "d").value)["reason_codes"] == []
