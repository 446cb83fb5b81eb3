"""Poison-message classification and the dead-letter record."""

from __future__ import annotations

import json

import pytest
from consumer_helpers import tx_doc

from consumers.exceptions import PoisonMessageError
from consumers.messages import (
    REASON_ABSURD,
    REASON_EMPTY,
    REASON_INVALID_JSON,
    REASON_OVERSIZED,
    REASON_SCHEMA,
    Incoming,
    dead_letter,
    parse_label,
    parse_transaction,
)


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
    error = PoisonMessageError(REASON_INVALID_JSON, "not JSON")
    out = dead_letter(original, error, "transactions-dlq")
    headers = dict(out.headers)
    assert (out.topic, out.key, out.value) == ("transactions-dlq", b"acc-9", b"\x00garbage")
    assert headers["dlq.reason"] == b"invalid_json"
    assert headers["dlq.source"] == b"transactions/2/41"
