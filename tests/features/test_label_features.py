"""Label-informed features: the point-in-time rule, repeats, flips, unknown transactions, and
batch/online parity on generated streams (hypothesis) and across a snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudops.data import tabular
from fraudops.data.labels import normalize_labels, to_labels
from fraudops.features import OnlineFeatureState, build_spec, compute_batch
from fraudops.features.batch import judged_runs
from fraudops.features.labels import OPEN, verdict_runs
from fraudops.features.spec import LABEL_MEMORY_US, LABEL_PRIOR_RATE
from fraudops.schema import TransactionLabel

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000
KEYS = ("account_id", "merchant_id", "device_id")


def stream(rows: list[tuple[str, str, str | None, float]]) -> pd.DataFrame:
    """Transactions (id, account, merchant, hours after T0), device d-<account>."""
    return tabular.normalize(pd.DataFrame({
        "transaction_id": [r[0] for r in rows], "account_id": [r[1] for r in rows],
        "merchant_id": [r[2] for r in rows], "device_id": [f"d-{r[1]}" for r in rows],
        "timestamp": [T0 + timedelta(hours=r[3]) for r in rows], "amount": 10.0,
        "merchant_category": "retail", "channel": "online", "country": "US", "label": 0}))


def labels_of(frame: pd.DataFrame, rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """Labels (transaction id, verdict, hours after T0) with the judged transaction's keys."""
    keys = frame.set_index("transaction_id")[list(KEYS)]
    out = pd.DataFrame({"transaction_id": [r[0] for r in rows], "label": [r[1] for r in rows],
                        "labelled_at": [T0 + timedelta(hours=r[2]) for r in rows],
                        "source": "analyst"})
    for key in KEYS:
        out[key] = out["transaction_id"].map(keys[key]) if len(out) else []
    return normalize_labels(out)


def column(frame, labels, name):
    """One feature of every row, batch; the online state (labels applied as they become
    known) must give the same."""
    spec = build_spec()
    batch = compute_batch(frame, spec, labels=labels)
    np.testing.assert_allclose(replay(frame, labels, spec), batch, atol=1e-6, rtol=0)
    return batch[:, spec.names.index(name)]


def replay(frame, labels, spec) -> np.ndarray:
    """Online features, each label applied just before the first event after its time."""
    state = OnlineFeatureState(spec)
    judged = [] if labels is None else sorted(to_labels(labels), key=lambda x: x.labelled_at)
    rows, next_label = [], 0
    for tx in tabular.to_transactions(frame):
        while next_label < len(judged) and judged[next_label].labelled_at < tx.timestamp:
            state.apply_label(judged[next_label])
            next_label += 1
        rows.append(state.update(tx)[0])
    return np.stack(rows)


def test_runs_count_a_repeat_once_and_let_a_flip_replace_the_verdict():
    assert verdict_runs([(5, 1), (3, 1), (5, 1)]) == [(3, OPEN, 1)]
    assert verdict_runs([(9, 0), (3, 1)]) == [(3, 9, 1), (9, OPEN, 0)]
    # two verdicts at one moment: the order is by verdict, whatever the arrival order
    assert verdict_runs([(4, 1), (4, 0)]) == verdict_runs([(4, 0), (4, 1)])
    # a repeat after the widest window starts afresh (the first run left every window)
    assert verdict_runs([(0, 1), (LABEL_MEMORY_US, 1)]) == [(0, LABEL_MEMORY_US, 1),
                                                           (LABEL_MEMORY_US, OPEN, 1)]


def test_a_label_counts_only_for_events_strictly_after_it_is_known():
    frame = stream([("t1", "a", "m", 0), ("t2", "b", "m", 5), ("t3", "c", "m", 5.5),
                    ("t4", "d", "m", 30)])
    labels = labels_of(frame, [("t1", 1, 5)])  # known at the moment t2 happens: not before
    fraud = column(frame, labels, "merchant_fraud_1d_log")
    np.testing.assert_allclose(fraud, [0, 0, np.log(2), 0])  # t4: out of the 1-day window
    assert column(frame, labels, "merchant_fraud_7d_log")[3] == pytest.approx(np.log(2))
    assert column(frame, None, "merchant_fraud_7d_log").tolist() == [0, 0, 0, 0]
    assert column(frame, None, "merchant_fraud_rate_7d")[0] == pytest.approx(LABEL_PRIOR_RATE)


def test_a_flip_replaces_the_verdict_from_its_time_on_and_a_repeat_counts_once():
    frame = stream([("t1", "a", "m", 0), ("t2", "b", "m", 2), ("t3", "c", "m", 4),
                    ("t4", "d", "m", 6)])
    labels = labels_of(frame, [("t1", 1, 1), ("t1", 1, 1.5), ("t1", 0, 3)])
    fraud = column(frame, labels, "merchant_fraud_7d_log")
    labelled = column(frame, labels, "merchant_labelled_7d_log")
    np.testing.assert_allclose(fraud, [0, np.log(2), 0, 0], atol=1e-7)
    np.testing.assert_allclose(labelled, [0, np.log(2), np.log(2), np.log(2)], atol=1e-7)


def test_a_label_for_an_unknown_transaction_is_ignored_and_counted():
    frame = stream([("t1", "a", "m", 0), ("t2", "b", "m", 5)])
    labels = labels_of(frame, [("t1", 1, 1)])
    # sent without entity keys, as a sender that does not know the transaction sends it
    elsewhere = labels.assign(transaction_id="elsewhere", account_id=pd.NA, merchant_id=pd.NA,
                              device_id=pd.NA)
    unknown = pd.concat([labels, elsewhere], ignore_index=True)
    np.testing.assert_array_equal(column(frame, unknown, "merchant_fraud_7d_log"),
                                  column(frame, labels, "merchant_fraud_7d_log"))
    assert judged_runs(frame, unknown).unknown == 1
    state = OnlineFeatureState(build_spec())
    assert not state.apply_label(TransactionLabel(transaction_id="elsewhere", label=1,
                                                  labelled_at=T0))
    assert state.labels.ignored == 1


def test_an_account_that_used_a_merchant_with_known_fraud_is_flagged():
    frame = stream([("t1", "x", "bad", 0), ("t2", "a", "bad", 5), ("t3", "a", "ok", 6),
                    ("t4", "a", "ok", 24 * 9)])
    labels = labels_of(frame, [("t1", 1, 1)])
    assert column(frame, labels, "merchant_fraud_known_7d").tolist() == [0, 1, 0, 0]
    np.testing.assert_allclose(column(frame, labels, "account_risky_visits_7d_log"),
                               [0, np.log(2), np.log(2), 0])


# -- parity on generated streams --------------------------------------------------------------

events = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(0, 24 * 40)),
                  min_size=1, max_size=40)
#: (transaction index, verdict, hours after T0, hours early it arrives, flipped hours later)
verdicts = st.lists(st.tuples(st.integers(0, 45), st.integers(0, 1), st.floats(-48, 24 * 40),
                              st.floats(0, 24 * 5), st.none() | st.floats(0, 24 * 10)),
                    max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events, verdicts=verdicts)
def test_batch_and_online_agree_on_any_label_stream(events, verdicts):
    """Labels before or after their transaction, repeats, flips, unknown ids (index beyond the
    stream: no keys), in any arrival order as long as each arrives before it is needed."""
    rows = sorted(((f"t{i}", f"a{a}", f"m{m}", h) for i, (a, m, h) in enumerate(events)),
                  key=lambda r: r[3])
    frame = stream(rows)
    flips = [(j, 1 - v, h + later, e, None) for j, v, h, e, later in verdicts if later is not None]
    verdicts = verdicts + flips
    label_rows = [(f"t{j}" if j < len(rows) else f"gone{j}", v, h) for j, v, h, *_ in verdicts]
    labels = labels_of(frame, label_rows)
    spec = build_spec()
    batch = compute_batch(frame, spec, labels=labels)
    early = [timedelta(hours=e) for _, _, _, e, _ in verdicts]
    order = sorted([(tx.timestamp, 1, i) for i, tx in enumerate(tabular.to_transactions(frame))]
                   + [(lab.labelled_at - early[j], 0, j)
                      for j, lab in enumerate(to_labels(labels))])
    state, online = OnlineFeatureState(spec), np.zeros_like(batch)
    txs, judged = list(tabular.to_transactions(frame)), list(to_labels(labels))
    for _, kind, i in order:
        if kind:
            online[i] = state.update(txs[i])[0]
        else:
            state.apply_label(judged[i])
    np.testing.assert_allclose(online, batch, atol=1e-6, rtol=0)


def test_a_redelivered_label_changes_nothing_and_the_state_survives_a_snapshot():
    frame = stream([(f"t{i}", f"a{i % 3}", f"m{i % 2}", i * 7.0) for i in range(40)])
    labels = labels_of(frame, [(f"t{i}", i % 2, i * 7.0 + 3) for i in range(0, 40, 3)])
    spec = build_spec()
    batch = compute_batch(frame, spec, labels=labels)
    txs, judged = list(tabular.to_transactions(frame)), list(to_labels(labels))
    state = OnlineFeatureState(spec)
    online, next_label = [], 0
    for i, tx in enumerate(txs):
        while next_label < len(judged) and judged[next_label].labelled_at < tx.timestamp:
            assert state.apply_label(judged[next_label])
            assert not state.apply_label(judged[next_label])  # redelivered: idempotent
            next_label += 1
        if i == 20:  # restart from a snapshot: the label state comes back with the rest
            delta = state.delta()
            state = OnlineFeatureState.restore(delta.header,
                                               [(*k, v) for k, v in delta.entries.items()])
            assert not state.apply_label(judged[0])  # and still knows what it applied
        online.append(state.update(tx)[0])
    np.testing.assert_allclose(np.stack(online), batch, atol=1e-6, rtol=0)
    assert state.labels.entities["merchant"], "the label state must not be empty"
