"""The label event (`fraudops.schema.TransactionLabel`): valid labels pass, malformed ones give a
clear validation error (a dead letter on the `labels` topic), never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consumers.exceptions import PoisonMessageError
from consumers.messages import REASON_ABSURD, REASON_SCHEMA, parse_label
from fraudops.schema import LabelSource, TransactionLabel
from fraudops.store import LabelRecord

VALID = {"transaction_id": "tx-1", "label": 1, "labelled_at": "2026-02-01T10:00:00Z",
         "source": "chargeback", "account_id": "acc-1", "merchant_id": "m-1",
         "device_id": "dev-1"}


def test_a_valid_label_round_trips_and_becomes_a_store_record() -> None:
    label = TransactionLabel.model_validate(VALID)
    assert label.labelled_at == datetime(2026, 2, 1, 10, tzinfo=UTC)
    assert label.source is LabelSource.CHARGEBACK
    assert TransactionLabel.model_validate_json(label.model_dump_json()) == label
    record = LabelRecord.from_label(label)
    assert (record.transaction_id, record.label, record.source, record.labelled_at) == (
        "tx-1", 1, "chargeback", label.labelled_at)


def test_older_producers_messages_still_parse() -> None:
    """The gateway used to send source 'gateway' (an analyst's verdict); the default was
    'labels-topic'; `labelled_at` was optional."""
    old = parse_label(b'{"transaction_id": "tx-1", "label": 0, "source": "gateway"}', 4096)
    assert (old.source, old.labelled_at) == (LabelSource.ANALYST, None)


@pytest.mark.parametrize(("change", "where"), [
    ({"label": 2}, "label"),
    ({"labelled_at": "2026-02-01T10:00:00"}, "labelled_at"),  # no timezone
    ({"labelled_at": "1970-01-01T00:00:00Z"}, "labelled_at"),
    ({"source": "oracle"}, "source"),
    ({"transaction_id": "tx 1"}, "transaction_id"),
    ({"merchant_id": ""}, "merchant_id"),
    ({"verdict": "fraud"}, "verdict"),  # unknown field
])
def test_malformed_labels_name_the_field(change: dict, where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TransactionLabel.model_validate(VALID | change)
    assert {e["loc"][0] for e in caught.value.errors()} == {where}


def test_labels_topic_reasons() -> None:
    for change, reason in [({"label": 7}, REASON_ABSURD),
                           ({"labelled_at": "2300-01-01T00:00:00Z"}, REASON_ABSURD),
                           ({"source": "oracle"}, REASON_SCHEMA)]:
        with pytest.raises(PoisonMessageError) as caught:
            parse_label(json.dumps(VALID | change).encode(), 4096)
        assert caught.value.reason == reason, change


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*VALID, "analyst", "note", "extra"]), _JSON,
                       max_size=8), st.booleans())
def test_any_message_is_a_label_or_a_dead_letter(fields: dict, over_valid: bool) -> None:
    """Whatever arrives on `labels`: a validated label, or a `PoisonMessageError` with a
    reason and a detail; never another exception."""
    body = (VALID | fields) if over_valid else fields
    try:
        raw = json.dumps(body).encode()
    except ValueError:  # NaN is JSON for Python, not for the wire: send it anyway
        raw = repr(body).encode()
    try:
        label = parse_label(raw, 10_000)
    except PoisonMessageError as error:
        assert error.reason and error.detail
        return
    assert label.label in (0, 1)
    assert label.labelled_at is None or label.labelled_at.tzinfo is not None
