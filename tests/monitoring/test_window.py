"""Reading the current window from the decision store (SQLite file; PostgreSQL in one test)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudops.store import BatchWrite, DecisionRecord, LabelRecord, Store
from monitoring.exceptions import EmptyWindowError
from monitoring.window import load_store_window, parse_events, window_bounds

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _event(i: int, label: int | None = None, t0: datetime = T0, prefix: str = "tx") -> dict:
    event = {"transaction_id": f"{prefix}-{i}", "account_id": f"acc-{i % 3}",
             "timestamp": (t0 + timedelta(hours=i)).isoformat().replace("+00:00", "Z"),
             "amount": 10.0 + i, "channel": "online", "merchant_category": "grocery",
             "extra": {"v1": float(i)}}
    if label is not None:
        event["label"] = label
    return event


def _fill(store: Store, hours: int = 48, t0: datetime = T0, prefix: str = "tx") -> None:
    decisions = [DecisionRecord(f"{prefix}-{i}", f"acc-{i % 3}", t0 + timedelta(hours=i),
                                10.0 + i, i / 100, i / 10, "approve",
                                json.dumps(_event(i, i % 2, t0, prefix)), model_version="m/1")
                 for i in range(hours)]
    store.write_batch(BatchWrite(decisions=decisions))
    store.add_labels([LabelRecord(f"{prefix}-47", 1), LabelRecord(f"{prefix}-46", 0)])


@pytest.fixture
def store(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    _fill(store)
    yield store
    store.close()


def test_window_needs_the_lookback_history_stored_before_it(store):
    # events every hour from T0 to T0+47h: the newest window starts at T0+37h
    start, end = window_bounds(store, timedelta(hours=10), lookback=timedelta(hours=37))
    assert (start, end) == (T0 + timedelta(hours=37, microseconds=1),
                            T0 + timedelta(hours=47, microseconds=1))
    with pytest.raises(EmptyWindowError, match="2026-03-03 00:00"):  # T0 + 38h + 10h
        window_bounds(store, timedelta(hours=10), lookback=timedelta(hours=38))


def test_window_ends_after_the_newest_event_and_loads_lookback(store):
    start, end = window_bounds(store, timedelta(hours=10))
    assert end == T0 + timedelta(hours=47, microseconds=1)
    window = load_store_window(store, start, end, lookback=timedelta(hours=5))
    assert window.rows == 10 and len(window.frame) == 15
    assert list(window.frame["transaction_id"][-2:]) == ["tx-46", "tx-47"]
    assert window.fraud_probability[-1] == pytest.approx(0.47)
    assert window.model_versions == ("m/1",)
    assert window.frame["extra_v1"].iloc[-1] == 47.0


def test_only_analyst_labels_count_unless_event_labels_are_trusted(store):
    start, end = window_bounds(store, timedelta(hours=10))
    analyst = load_store_window(store, start, end, timedelta(0))
    assert list(analyst.labels[-3:]) == [-1, 0, 1]
    trusted = load_store_window(store, start, end, timedelta(0), event_labels=True)
    assert list(trusted.labels[-3:]) == [1, 0, 1]  # tx-45's own label (odd = 1) fills the gap


def test_max_rows_moves_the_window_start(store):
    start, end = window_bounds(store, timedelta(days=30), max_rows=5)
    assert start == T0 + timedelta(hours=43)
    assert load_store_window(store, start, end, timedelta(0)).rows == 5


def test_empty_store_and_empty_window_are_clear_errors(tmp_path, store):
    empty = Store.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(EmptyWindowError, match="no scored transactions yet"):
        window_bounds(empty, timedelta(days=1))
    with pytest.raises(EmptyWindowError, match="no scored transactions between"):
        load_store_window(store, T0 - timedelta(days=3), T0 - timedelta(days=2), timedelta(0))


def test_events_without_optional_fields_parse():
    frame = parse_events([json.dumps({"transaction_id": "a", "account_id": "b",
                                      "timestamp": "2026-03-01T00:00:00Z", "amount": 1})])
    assert frame["channel"].iloc[0] == "other" and frame["label"].iloc[0] == -1
    assert np.isnan(frame.get("extra_v1", np.array([np.nan]))).all()


@pytest.mark.integration
def test_window_from_postgresql(postgres_url):
    # The session's PostgreSQL database is shared: own ids and a time range nobody else uses.
    store = Store.from_url(postgres_url)
    t0, prefix = datetime(2031, 7, 1, tzinfo=UTC), f"mon-{uuid.uuid4().hex[:6]}"
    try:
        _fill(store, t0=t0, prefix=prefix)
        start, end = window_bounds(store, timedelta(hours=4), end=t0 + timedelta(hours=48))
        window = load_store_window(store, start, end, timedelta(hours=1))
        assert window.rows == 4 and len(window.frame) == 5 and window.labels[-1] == 1
    finally:
        store.close()
