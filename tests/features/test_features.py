"""Behaviour of individual features on hand-built streams."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.features import (
    BASE_FEATURES,
    FEATURE_SPEC_VERSION,
    EventTimePolicy,
    OnlineFeatureState,
    admit_stream,
    build_spec,
    compute_batch,
    sequence_index,
)
from fraudops.schema import Transaction

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


def tx(i: int, minutes: float, amount: float = 10.0, account="a", **fields) -> Transaction:
    return Transaction(transaction_id=f"t{i}", account_id=account,
                       timestamp=T0 + timedelta(minutes=minutes), amount=amount, **fields)


def batch_of(events: list[Transaction], spec=None):
    frame = tabular.sort_by_time(tabular.from_transactions(events))
    spec = spec or build_spec()
    return frame, compute_batch(frame, spec), spec


def column(spec, matrix, name):
    return matrix[:, spec.names.index(name)]


def test_window_excludes_an_event_exactly_one_window_old():
    events = [tx(0, 0, 5.0), tx(1, 30, 7.0), tx(2, 60, 11.0), tx(3, 60 * 25, 13.0)]
    _, x, spec = batch_of(events)
    counts = np.expm1(column(spec, x, "account_count_1h_log")).round()
    sums = np.expm1(column(spec, x, "account_sum_1h_log"))
    maxima = np.expm1(column(spec, x, "account_max_24h_log"))
    assert counts.tolist() == [1, 2, 2, 1]  # t=60 min drops the event at t=0 (window is (t-1h, t])
    np.testing.assert_allclose(sums, [5, 12, 18, 13], rtol=1e-6)
    np.testing.assert_allclose(maxima, [5, 7, 11, 13], rtol=1e-6)  # 25 h later: only itself


def test_novelty_flags_first_use_per_account_and_ignore_unknowns():
    events = [
        tx(0, 0, device_id="d1", country="US", merchant_id="m1"),
        tx(1, 5, device_id="d1", country="US", merchant_id="m2"),
        tx(2, 9, device_id="d2", country=None, merchant_id=None),
        tx(3, 12, account="b", device_id="d1", country="US", merchant_id="m1"),
    ]
    _, x, spec = batch_of(events)
    assert column(spec, x, "account_new_device").tolist() == [1, 0, 1, 1]
    assert column(spec, x, "account_new_merchant").tolist() == [1, 1, 0, 1]
    assert column(spec, x, "account_new_country").tolist() == [1, 0, 0, 1]
    # d1 is shared by two accounts: device velocity sees both.
    assert np.expm1(column(spec, x, "device_count_1h_log")).round().tolist() == [1, 2, 1, 3]


def test_amount_z_scores_a_spike_against_history():
    events = [tx(i, i * 60, amount=20.0 + i % 2) for i in range(6)] + [tx(6, 400, amount=900.0)]
    _, x, spec = batch_of(events)
    z = column(spec, x, "account_amount_z")
    assert z[0] == 0 and z[1] == 0  # fewer than two previous amounts
    assert z[-1] > 5 and abs(z[3]) < 1


def test_gap_and_cyclic_time():
    _, x, spec = batch_of([tx(0, 0), tx(1, 90)])
    assert column(spec, x, "account_gap_log")[1] == pytest.approx(math.log1p(5400), rel=1e-6)
    assert column(spec, x, "account_first_seen").tolist() == [1, 0]
    # Monday noon: time of day is half a day, so cos = -1.
    assert column(spec, x, "hour_cos")[0] == pytest.approx(-1.0, abs=1e-6)


def test_passthrough_missing_values_become_zero():
    events = [tx(0, 0, extra={"v1": 2.5}), tx(1, 1)]
    frame = tabular.sort_by_time(tabular.from_transactions(events))
    spec = build_spec(["v1"])
    x = compute_batch(frame, spec)
    assert spec.names[-1] == "extra_v1" and spec.dim == len(BASE_FEATURES) + 1
    assert x[:, -1].tolist() == [2.5, 0.0]


def test_unsorted_frame_is_refused():
    frame = tabular.from_transactions([tx(0, 10), tx(1, 0)])
    with pytest.raises(ValueError, match="sorted by timestamp"):
        compute_batch(frame, build_spec())


def test_sequence_index_pads_at_the_front():
    frame = tabular.sort_by_time(tabular.from_transactions(
        [tx(0, 0), tx(1, 1, account="b"), tx(2, 2), tx(3, 3)]))
    idx = sequence_index(frame, 3)
    assert idx.tolist() == [[-1, -1, 0], [-1, -1, 1], [-1, 0, 2], [0, 2, 3]]


def test_imported_data_without_accounts_has_sequences_of_one():
    frame = tabular.sort_by_time(tabular.from_transactions(
        [tx(i, i, account=f"t{i}") for i in range(4)]))
    idx = sequence_index(frame, 4)
    assert (idx[:, :-1] == -1).all() and idx[:, -1].tolist() == [0, 1, 2, 3]


def _apply(stored: dict, delta) -> dict:
    """What the store does with a delta: replace everything or upsert the changed entries."""
    return dict(delta.entries) if delta.full else stored | delta.entries


def test_restore_from_deltas_continues_exactly(stream):
    spec = build_spec(tabular.passthrough_names(stream))
    events = list(tabular.to_transactions(stream.head(600)))
    straight = OnlineFeatureState(spec, 4)
    expected = [straight.update(e)[1] for e in events]
    first, stored = OnlineFeatureState(spec, 4), {}
    for cut in (0, 150, 300):  # three snapshots: the first holds nothing, the rest changes only
        for e in events[cut - 150 if cut else 0:cut]:
            first.update(e)
        delta = first.delta()
        stored = _apply(stored, delta)
    assert len(stored) == len(first.accounts) + sum(map(len, first.velocity.values()))
    rows = [(kind, key, blob) for (kind, key), blob in stored.items()]
    resumed = OnlineFeatureState.restore(delta.header, rows)
    got = [resumed.update(e)[1] for e in events[300:]]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected[300:]))


def test_delta_holds_only_what_changed(stream):
    spec = build_spec(tabular.passthrough_names(stream))
    events = list(tabular.to_transactions(stream.head(400)))
    state = OnlineFeatureState(spec, 4)
    for e in events[:-1]:
        state.update(e)
    first = state.delta()
    assert first.full and len(first.entries) > 100
    last = events[-1]
    state.update(last)
    second = state.delta()
    expected = {("account", last.account_id), ("velocity.account", last.account_id)}
    expected |= {(f"velocity.{entity}", getattr(last, f"{entity}_id"))
                 for entity in ("merchant", "device") if getattr(last, f"{entity}_id")}
    assert not second.full and set(second.entries) == expected
    assert state.delta().entries == {}
    # a restored state's first delta holds changes only: its stored copy is complete
    restored = OnlineFeatureState.restore(second.header, [(*k, v) for k, v in first.entries.items()])
    assert restored.delta() == type(second)(second.header, {}, full=False)


def test_restore_refuses_another_spec_version():
    state = OnlineFeatureState(build_spec(), 4)
    header = state.delta().header.replace(FEATURE_SPEC_VERSION.encode(), b"0.0.9")
    with pytest.raises(ValueError, match="different feature spec"):
        OnlineFeatureState.restore(header, [])


def test_spec_round_trip_and_fingerprint():
    spec = build_spec(["a", "b"])
    assert type(spec).from_dict(spec.to_dict()) == spec
    assert build_spec(["b", "a"]).fingerprint != spec.fingerprint
    with pytest.raises(ValueError, match="duplicate"):
        build_spec(["a", "a"])


def test_frame_round_trip_keeps_events(stream):
    events = list(tabular.to_transactions(stream.head(50)))
    back = tabular.from_transactions(events)
    pd.testing.assert_frame_equal(back, stream.head(50).reset_index(drop=True), check_dtype=False)


# -- the event-time policy ----------------------------------------------------------------------


def online_of(events: list[Transaction], spec=None) -> np.ndarray:
    state = OnlineFeatureState(spec or build_spec(), 4)
    return np.stack([state.update(e)[0] for e in events])


def test_a_late_event_has_a_zero_gap_and_counts_at_the_watermark():
    # the 3rd event is 10 minutes older than the 2nd: it used to raise "math domain error"
    events = [tx(0, 0, 5.0), tx(1, 30, 7.0), tx(2, 20, 11.0), tx(3, 95, 13.0)]
    x = online_of(events)
    spec = build_spec()
    gaps = np.expm1(column(spec, x, "account_gap_log")) / 60
    np.testing.assert_allclose(gaps, [0, 30, 0, 65], atol=1e-3)  # 65 = 95 - 30, the watermark
    counts = np.expm1(column(spec, x, "account_count_1h_log")).round()
    # at 95 min the window (35, 95] holds nothing before: the late event counted at 30 min
    assert counts.tolist() == [1, 2, 3, 1]
    # time of day is the event's own
    assert column(spec, x, "hour_cos")[2] == pytest.approx(np.cos(2 * np.pi * (12 * 60 + 20)
                                                                  / 1440), abs=1e-6)


def test_a_late_event_at_a_merchant_is_clamped_to_the_merchants_watermark():
    events = [tx(0, 60, 5.0, account="a", merchant_id="m"),
              tx(1, 0, 7.0, account="b", merchant_id="m"),  # on time for b, late for m
              tx(2, 61, 11.0, account="c", merchant_id="m")]
    x = online_of(events)
    spec = build_spec()
    assert np.expm1(column(spec, x, "merchant_count_1h_log")).round().tolist() == [1, 2, 3]
    assert column(spec, x, "account_first_seen").tolist() == [1, 1, 1]


def test_lateness_is_measured_against_the_accounts_watermark():
    state = OnlineFeatureState(build_spec(), 4)
    assert state.lateness_us(tx(0, 10)) == 0  # a new account
    state.update(tx(0, 10))
    state.update(tx(1, 5))  # late: the watermark stays at 10 min
    assert state.lateness_us(tx(2, 7)) == 3 * 60 * 1_000_000
    assert state.lateness_us(tx(3, 12)) == 0
    assert state.lateness_us(tx(4, 0, account="b")) == 0


def test_batch_refuses_unsorted_rows_unless_told_they_arrived_so():
    events = [tx(0, 0, 5.0), tx(1, 30, 7.0), tx(2, 20, 11.0), tx(3, 95, 13.0)]
    frame = tabular.from_transactions(events)
    with pytest.raises(ValueError, match="sorted by timestamp"):
        compute_batch(frame, build_spec())
    batch = compute_batch(frame, build_spec(), arrival_order=True)
    np.testing.assert_allclose(batch, online_of(events), atol=1e-6)


def test_policy_bounds_lateness():
    policy = EventTimePolicy(allowed_lateness_s=60.0)
    assert not policy.too_late(60_000_000) and policy.too_late(60_000_001)
    assert not EventTimePolicy(float("inf")).too_late(10**18)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="allowed_lateness_s"):
            EventTimePolicy(bad)


def test_admission_replays_the_consumers_rules():
    events = [tx(0, 0), tx(1, 120), tx(2, 70), tx(0, 0), tx(3, 10), tx(1, 120, amount=99.0),
              tx(3, 119)]
    admission = admit_stream(tabular.from_transactions(events), EventTimePolicy(3600.0))
    # t3 at 10 min is 110 min late (too late), so id t3 is free again when it comes back
    assert admission.outcome.tolist() == ["decided", "decided", "decided", "duplicate",
                                          "too_late", "conflicting_duplicate", "decided"]
    assert admission.late_by_us.tolist() == [0, 0, 50 * 60_000_000, 0, 110 * 60_000_000, 0,
                                             60_000_000]
    assert admission.frame["transaction_id"].tolist() == ["t0", "t1", "t2", "t3"]
