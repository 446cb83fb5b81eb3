"""Generated streams through the consumer's ingest path (hypothesis): valid transactions with
late, out-of-order and offset timestamps, timestamps at the edges of the calendar, absurd
amounts, byte-identical and reformatted redeliveries, conflicting duplicates, labels, garbage.

Properties, on 10,000 generated messages (100 streams of up to 100) and 4,000 across restarts:
no message raises; every record is accounted for (decided, published again or dead-lettered);
`fraud-decisions` holds one decision per id, byte for byte what the store holds; the decisions
are the batch computation under the event-time policy (`admit_stream` + `compute_batch`); and a
crash and restart anywhere changes no decision. `benchmarks/bench_ingest_fuzz.py` runs the same
kind of stream for a million messages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
from consumer_helpers import SEQ_LEN, SPEC, rule_score
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consumers.exceptions import PoisonMessageError
from consumers.messages import Incoming, parse_transaction, stored_decision_message
from consumers.processor import ProcessorConfig, StreamProcessor
from fraudops.data import tabular
from fraudops.features import EventTimePolicy, OnlineFeatureState, admit_stream, compute_batch
from fraudops.schema import MAX_AMOUNT
from fraudops.store import Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LIMIT = 64 * 1024
POLICY = EventTimePolicy(allowed_lateness_s=3600.0)
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
amounts = st.one_of(
    st.floats(0, MAX_AMOUNT), st.sampled_from([0, 0.01, 0.005, MAX_AMOUNT, MAX_AMOUNT + 1, -0.0]),
    st.integers(-10, 10**8), st.floats(allow_nan=True, allow_infinity=True))
transactions = st.tuples(
    st.just("tx"),
    st.one_of(st.integers(0, 30), st.integers(0, 10**9)),  # small ids collide across accounts
    st.integers(0, 5),  # account
    st.one_of(st.just(0), st.just(0), st.integers(-3 * 3600, 600)),  # seconds late (< 0) or early
    st.integers(0, 999_999), zones, amounts,
    st.sampled_from([None, "m-1", "m-2", "m-3"]), st.sampled_from([None, "d-1", "d-2"]),
    st.sampled_from([None, "US", "FR"]), st.sampled_from(["online", "atm", "other"]),
    st.dictionaries(st.sampled_from(["v0", "v1"]), st.floats(-1e6, 1e6), max_size=2))
edge_times = st.one_of(
    st.sampled_from(["9999-12-31T23:30:00-05:00", "0001-01-01T00:30:00+05:00",
                     "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00+23:59",
                     "2100-01-01T00:00:00Z", "1999-12-31T23:59:59.999999Z",
                     "2026-03-01T09:00:00", "2026-02-30T00:00:00Z", "not a time"]),
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999),
                 timezones=st.one_of(st.none(), zones)).map(datetime.isoformat))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
operations = st.one_of(
    transactions, transactions, transactions, transactions,
    st.tuples(st.just("dup"), st.integers(0, 10**6)),
    st.tuples(st.just("conflict"), st.integers(0, 10**6)),
    st.tuples(st.just("reformat"), st.integers(0, 10**6), zones),
    st.tuples(st.just("edge_time"), st.integers(0, 10**6), edge_times),
    st.tuples(st.just("mutate"), st.integers(0, 10**6), st.sampled_from(
        ["amount", "timestamp", "account_id", "transaction_id", "extra", "channel", "nope"]),
        json_values),
    st.tuples(st.just("label"), st.integers(0, 10**6), st.one_of(st.integers(0, 1), json_values)),
    st.tuples(st.just("garbage"), st.one_of(st.binary(max_size=64), json_values.map(
        lambda v: json.dumps(v).encode()))))


def build(operations: list) -> list[Incoming]:
    """The records of a generated stream (transactions on partition 0, labels beside)."""
    docs: list[dict] = []
    out: list[tuple[str, bytes]] = []
    for i, op in enumerate(operations):
        kind = op[0]
        if kind == "tx":
            docs.append(_transaction(i, *op[1:]))
            out.append(("transactions", json.dumps(docs[-1]).encode()))
            continue
        if kind == "garbage":
            out.append(("transactions", op[1]))
            continue
        if not docs:
            continue
        earlier = docs[op[1] % len(docs)]
        if kind == "label":
            out.append(("labels", json.dumps({"transaction_id": earlier["transaction_id"],
                                              "label": op[2]}).encode()))
        else:
            out.append(("transactions", _variant(kind, earlier, op)))
    offsets = {"transactions": 0, "labels": 0}
    records = []
    for topic, value in out:
        records.append(Incoming(topic, 0, offsets[topic], b"k", value))
        offsets[topic] += 1
    return records


def _transaction(i, tx_id, account, seconds, micros, zone, amount, merchant, device, country,
                 channel, extra) -> dict:
    moment = (T0 + timedelta(seconds=30 * i + seconds, microseconds=micros)).astimezone(zone)
    doc = {"transaction_id": f"tx-{tx_id}", "account_id": f"acc-{account}",
           "timestamp": moment.isoformat(), "amount": amount, "channel": channel,
           "merchant_id": merchant, "device_id": device, "country": country, "extra": extra}
    return {k: v for k, v in doc.items() if v is not None}


def _variant(kind: str, earlier: dict, op: tuple) -> bytes:
    if kind == "dup":
        return json.dumps(earlier).encode()
    if kind == "conflict":
        amount = earlier["amount"]
        changed = amount + 1 if isinstance(amount, (int, float)) and abs(amount) < 1e15 else 1.0
        return json.dumps(earlier | {"amount": changed}).encode()
    if kind == "reformat":  # the same transaction: other key order, time zone, explicit default
        doc = dict(reversed(list(earlier.items()))) | {"currency": "USD"}
        try:
            moment = datetime.fromisoformat(earlier["timestamp"]).astimezone(op[2])
            doc["timestamp"] = moment.isoformat()
        except (OverflowError, ValueError):
            pass
        return json.dumps(doc, separators=(",", ":")).encode()
    if kind == "edge_time":
        return json.dumps(earlier | {"timestamp": op[2]}).encode()
    return json.dumps(earlier | {op[2]: op[3]}).encode()  # mutate


class Recorder:
    """rule_score, keeping the features of every scored transaction."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def __call__(self, x: np.ndarray, mask: np.ndarray):
        self.rows.extend(x[:, -1, :])
        return rule_score(x, mask)


def processor(store: Store, score=rule_score, snapshot_s: float = 1000.0) -> StreamProcessor:
    p = StreamProcessor(ProcessorConfig(group_id="g", snapshot_interval_s=snapshot_s,
                                        event_time=POLICY),
                        store=store, score=score,
                        new_state=lambda: OnlineFeatureState(SPEC, SEQ_LEN))
    p.assign([0])
    return p


def run(p: StreamProcessor, records: list[Incoming], size: int) -> tuple[list, list]:
    """Process and persist in batches of `size`: (decisions, published records)."""
    decisions, outgoing = [], []
    for start in range(0, len(records), size):
        outcome = p.process(records[start:start + size])
        decisions += outcome.writes.decisions
        outgoing += outcome.outgoing
        p.persist(outcome)
    return decisions, outgoing


def valid_transactions(records: list[Incoming]) -> list:
    valid = []
    for r in records:
        if r.topic == "transactions":
            try:
                valid.append(parse_transaction(r.value, LIMIT))
            except PoisonMessageError:
                pass
    return valid


@settings(FUZZ, max_examples=100)
@given(ops=st.lists(operations, min_size=100, max_size=100), size=st.integers(1, 40))
def test_generated_streams_never_stop_the_consumer_and_follow_the_batch_policy(ops, size):
    records = build(ops)
    store = Store.from_url("sqlite://")
    recorder = Recorder()
    p = processor(store, recorder)
    decisions, outgoing = run(p, records, size)  # nothing may raise

    transactions = [r for r in records if r.topic == "transactions"]
    value = p.metrics.registry.get_sample_value
    dead = [m for m in outgoing if m.topic == "transactions-dlq"
            and dict(m.headers)["dlq.source"].startswith(b"transactions/")]
    republished = value("fraud_consumer_duplicates_total", {"outcome": "republished"}) or 0
    assert len(dead) + len(decisions) + republished == len(transactions)
    assert p.partitions[0].position == len(transactions)
    assert not any(dict(m.headers)["dlq.reason"] == b"processing_error" for m in dead)
    for reason in {dict(m.headers)["dlq.reason"].decode() for m in dead}:
        event(f"dead-lettered: {reason}")  # --hypothesis-show-statistics shows the mix
    if republished:
        event("redelivery published again")
    if value("fraud_consumer_late_events_total", {"outcome": "accepted"}):
        event("late transaction scored")

    # one decision per id on fraud-decisions, exactly what the store holds
    stored = store.decided({d.transaction_id for d in decisions})
    for message in (m for m in outgoing if m.topic == "fraud-decisions"):
        tx_id = json.loads(message.value)["transaction_id"]
        assert message == stored_decision_message(stored[tx_id], "fraud-decisions")

    # the batch computation under the event-time policy decides the same and computes the same
    valid = valid_transactions(records)
    if not valid:
        assert not decisions
        return
    admission = admit_stream(tabular.from_transactions(valid), POLICY)
    assert admission.frame["transaction_id"].tolist() == [d.transaction_id for d in decisions]
    reasons = sorted(dict(m.headers)["dlq.reason"].decode() for m in dead
                     if dict(m.headers)["dlq.reason"] in (b"too_late", b"conflicting_duplicate"))
    expected = sorted(o for o in admission.outcome if o in ("too_late", "conflicting_duplicate"))
    assert reasons == expected
    if decisions:
        online = np.stack(recorder.rows)
        assert np.isfinite(online).all()
        batch = compute_batch(admission.frame, SPEC, arrival_order=True)
        np.testing.assert_allclose(online, batch, atol=1e-5, rtol=1e-6)
    store.close()


def _decisions(store: Store) -> dict:
    ids = [d.transaction_id for d in store.scored_window()]
    return {i: (d.decision, d.fraud_probability, d.anomaly_score, d.source)
            for i, d in store.decided(ids).items()}


@settings(FUZZ, max_examples=40)
@given(ops=st.lists(operations, min_size=100, max_size=100), size=st.integers(1, 25),
       cut=st.integers(0, 100), snapshot_s=st.sampled_from([0.0, 1000.0]))
def test_a_crash_and_restart_anywhere_changes_no_decision(ops, size, cut, snapshot_s):
    records = [r for r in build(ops) if r.topic == "transactions"]
    cut = min(cut, len(records))
    reference = Store.from_url("sqlite://")
    run(processor(reference, snapshot_s=snapshot_s), records, size)
    crashed = Store.from_url("sqlite://")
    first = processor(crashed, snapshot_s=snapshot_s)
    _, before = run(first, records[:cut], size)
    first.process(records[cut:cut + size])  # dies before this batch is durable
    second = processor(crashed, snapshot_s=snapshot_s)
    seek = second.assign([0])[0] or 0
    _, after = run(second, records[seek:], size)
    assert _decisions(crashed) == _decisions(reference)
    published: dict[str, set[bytes]] = {}
    for message in before + after:
        if message.topic == "fraud-decisions":
            published.setdefault(json.loads(message.value)["transaction_id"], set()).add(
                message.value)
    assert all(len(values) == 1 for values in published.values())
    reference.close()
    crashed.close()
