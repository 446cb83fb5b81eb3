"""Batch and online execution of the feature spec agree on the same stream (within 1e-6),
time-sorted or out of order under the event-time policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.conftest import random_labels
from fraudops.data import tabular
from fraudops.data.labels import normalize_labels, to_labels
from fraudops.features import (
    EventTimePolicy,
    OnlineFeatureState,
    admit_stream,
    build_spec,
    compute_batch,
    gather_sequences,
    sequence_index,
)
from fraudops.features.policy import CONFLICTING_DUPLICATE, DECIDED, DUPLICATE, TOO_LATE

#: The features of spec 1.0.0 (before the label-informed ones).
BASE_FEATURES_V1 = {n for n in build_spec().names
                    if not any(p in n for p in ("fraud", "labelled", "risky"))}

SEQ_LEN = 5


@pytest.fixture(scope="module")
def both(stream):
    spec = build_spec(tabular.passthrough_names(stream))
    batch = compute_batch(stream, spec)
    state = OnlineFeatureState(spec, SEQ_LEN)
    online, sequences, masks = [], [], []
    for tx in tabular.to_transactions(stream):
        features, seq, mask = state.update(tx)
        online.append(features)
        sequences.append(seq)
        masks.append(mask)
    return spec, batch, np.stack(online), np.stack(sequences), np.stack(masks)


def test_batch_and_online_features_match(both):
    spec, batch, online, _, _ = both
    assert batch.shape == online.shape == (len(online), spec.dim)
    worst = np.abs(batch.astype(np.float64) - online).max(axis=0)
    mismatched = {n: float(w) for n, w in zip(spec.names, worst, strict=True) if w > 1e-6}
    assert not mismatched, f"batch/online disagree: {mismatched}"


def test_batch_and_online_sequences_match(stream, both):
    _, batch, _, sequences, masks = both
    x, mask = gather_sequences(batch, sequence_index(stream, SEQ_LEN))
    np.testing.assert_array_equal(mask, masks)
    np.testing.assert_allclose(x, sequences, atol=1e-6, rtol=1e-6)


def test_features_are_not_trivial(both):
    """Guard against a parity that holds because both sides return zeros."""
    spec, batch, _, _, _ = both
    constant = [n for n, col in zip(spec.names, batch.T, strict=True)
                if np.ptp(col) == 0 and n in BASE_FEATURES_V1]  # no labels here
    assert not constant, f"features constant over a varied stream: {constant}"


# -- the event-time policy: late, out-of-order and duplicate events ---------------------------

#: Events of one account are hours apart in this stream: a day of lateness admits some late
#: events and refuses others.
POLICY = EventTimePolicy(allowed_lateness_s=86_400.0)


def arrival_order(stream: pd.DataFrame, seed: int = 11) -> pd.DataFrame:
    """The time-sorted stream as a consumer might receive it: 10% of the events arrive late
    (held back by up to 400 positions, which is seconds to days in this stream), 1% twice,
    and a few ids come back with another content."""
    rng = np.random.default_rng(seed)
    n = len(stream)
    position = np.arange(n, dtype=np.float64)
    late = rng.random(n) < 0.1
    position[late] += rng.integers(1, 400, late.sum())
    frame = stream.iloc[np.argsort(position, kind="stable")]
    again = frame.sample(frac=0.01, random_state=seed)
    conflicting = frame.sample(n=5, random_state=seed + 1).assign(amount=lambda f: f.amount + 1)
    frame = pd.concat([frame, again, conflicting])
    order = np.argsort(np.concatenate([np.arange(n), rng.integers(0, n, len(frame) - n)]),
                       kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def online_admission(frame: pd.DataFrame, spec, policy: EventTimePolicy):
    """The consumer's rules, event by event: duplicates of a decided id and too-late events
    are not applied; everything else is, late or not."""
    state = OnlineFeatureState(spec, SEQ_LEN)
    decided: dict[str, object] = {}
    outcomes, rows, sequences, masks = [], [], [], []
    for tx in tabular.to_transactions(frame):
        if tx.transaction_id in decided:
            same = decided[tx.transaction_id] == tx
            outcomes.append(DUPLICATE if same else CONFLICTING_DUPLICATE)
            continue
        if policy.too_late(state.lateness_us(tx)):
            outcomes.append(TOO_LATE)
            continue
        decided[tx.transaction_id] = tx
        features, sequence, mask = state.update(tx)
        outcomes.append(DECIDED)
        rows.append(features)
        sequences.append(sequence)
        masks.append(mask)
    return np.array(outcomes), np.stack(rows), np.stack(sequences), np.stack(masks)


@pytest.fixture(scope="module")
def out_of_order(stream):
    frame = arrival_order(stream)
    spec = build_spec(tabular.passthrough_names(frame))
    admission = admit_stream(frame, POLICY)
    batch = compute_batch(admission.frame, spec, arrival_order=True)
    return frame, spec, admission, batch, online_admission(frame, spec, POLICY)


def test_the_stream_has_every_kind_of_event(out_of_order):
    frame, _, admission, _, _ = out_of_order
    late = admission.decided & (admission.late_by_us > 0)
    counts = {kind: int((admission.outcome == kind).sum())
              for kind in (DECIDED, DUPLICATE, CONFLICTING_DUPLICATE, TOO_LATE)}
    assert late.sum() > 100 and counts[TOO_LATE] > 20, counts
    assert counts[DUPLICATE] > 10 and counts[CONFLICTING_DUPLICATE] >= 3, counts
    assert not tabular.sort_by_time(frame).equals(frame)


def test_batch_and_online_apply_the_same_policy(out_of_order):
    _, spec, admission, batch, (outcomes, online, sequences, masks) = out_of_order
    np.testing.assert_array_equal(admission.outcome, outcomes)
    worst = np.abs(batch.astype(np.float64) - online).max(axis=0)
    mismatched = {n: float(w) for n, w in zip(spec.names, worst, strict=True) if w > 1e-6}
    assert not mismatched, f"batch/online disagree on a late stream: {mismatched}"
    x, mask = gather_sequences(batch, sequence_index(admission.frame, SEQ_LEN))
    np.testing.assert_array_equal(mask, masks)
    np.testing.assert_allclose(x, sequences, atol=1e-6, rtol=1e-6)


def test_late_events_have_clamped_gaps_and_finite_features(out_of_order):
    _, spec, admission, batch, _ = out_of_order
    late = (admission.late_by_us > 0)[admission.decided]
    gap = batch[:, spec.names.index("account_gap_log")]
    assert np.isfinite(batch).all()
    assert (gap[late] == 0).all() and (gap >= 0).all()


def test_unlimited_lateness_scores_every_late_event(out_of_order):
    frame, spec, _, _, _ = out_of_order
    unlimited = EventTimePolicy(allowed_lateness_s=float("inf"))
    admission = admit_stream(frame, unlimited)
    assert TOO_LATE not in set(admission.outcome)
    outcomes, online, _, _ = online_admission(frame, spec, unlimited)
    np.testing.assert_array_equal(admission.outcome, outcomes)
    batch = compute_batch(admission.frame, spec, arrival_order=True)
    np.testing.assert_allclose(batch, online, atol=1e-6, rtol=1e-6)


# -- label-informed features: labels interleaved with the transactions ------------------------

KEYS = ("account_id", "merchant_id", "device_id")


def interleave(stream: pd.DataFrame, labels: pd.DataFrame, early_s: float, seed: int = 5):
    """Transactions and labels in one arrival order: each label arrives up to `early_s`
    seconds before its `labelled_at` (0: in time order), so labels arrive out of order among
    themselves but each before the first transaction it counts for."""
    rng = np.random.default_rng(seed)
    label_arrival = labels["labelled_at"] - pd.to_timedelta(
        rng.uniform(0, early_s, len(labels)), "s")
    events = pd.DataFrame({
        "at": pd.concat([stream["timestamp"], label_arrival], ignore_index=True),
        "kind": np.r_[np.ones(len(stream)), np.zeros(len(labels))],  # labels first at a tie
        "row": np.r_[np.arange(len(stream)), np.arange(len(labels))]})
    events = events.sort_values(["at", "kind"], kind="stable")
    return list(zip(events["kind"].to_numpy(), events["row"].to_numpy(), strict=True))


def online_with_labels(stream, labels, spec, order) -> np.ndarray:
    state = OnlineFeatureState(spec, SEQ_LEN)
    txs = list(tabular.to_transactions(stream))
    judged = list(to_labels(normalize_labels(labels)))
    rows = np.empty((len(txs), spec.dim), dtype=np.float32)
    for kind, row in order:
        if kind:
            rows[row] = state.update(txs[row])[0]
        else:
            state.apply_label(judged[row])
    return rows


def assert_parity(spec, batch, online) -> None:
    worst = np.abs(batch.astype(np.float64) - online).max(axis=0)
    mismatched = {n: float(w) for n, w in zip(spec.names, worst, strict=True) if w > 1e-6}
    assert not mismatched, f"batch/online disagree: {mismatched}"


@pytest.fixture(scope="module")
def labelled(stream):
    labels = random_labels(stream)
    spec = build_spec(tabular.passthrough_names(stream))
    # the batch path is given the labels in no particular order
    batch = compute_batch(stream, spec, labels=labels.sample(frac=1.0, random_state=1))
    return labels, spec, batch


@pytest.mark.parametrize("early_s", [0.0, 3 * 86_400.0], ids=["in-time-order", "out-of-order"])
def test_batch_and_online_label_features_match(stream, labelled, early_s):
    labels, spec, batch = labelled
    order = interleave(stream, labels, early_s)
    assert_parity(spec, batch, online_with_labels(stream, labels, spec, order))


def test_label_features_are_not_trivial(labelled):
    _, spec, batch = labelled
    label_names = [n for n in spec.names if n not in BASE_FEATURES_V1]
    constant = [n for n in label_names if np.ptp(batch[:, spec.names.index(n)]) == 0]
    assert not constant, f"label features constant over a labelled stream: {constant}"


def test_label_features_of_a_late_stream_match(stream, labelled):
    """Out-of-order transactions (the event-time policy) and labels together."""
    labels, spec, _ = labelled
    admission = admit_stream(arrival_order(stream), POLICY)
    frame = admission.frame
    # The verdicts of refused transactions come without keys (their sender never stored them)
    refused = ~labels["transaction_id"].isin(frame["transaction_id"])
    labels = labels.assign(**{k: labels[k].mask(refused) for k in KEYS})
    batch = compute_batch(frame, spec, arrival_order=True, labels=labels)
    # labels arrive by their time against the transactions' arrival (row) order
    arrival = frame["timestamp"].cummax()
    position = np.searchsorted(arrival.to_numpy(), labels["labelled_at"].to_numpy(), "left")
    order = sorted([(1, i) for i in range(len(frame))] + [(0, j) for j in range(len(labels))],
                   key=lambda e: (e[1] if e[0] else position[e[1]], e[0]))
    assert_parity(spec, batch, online_with_labels(frame, labels, spec, order))
