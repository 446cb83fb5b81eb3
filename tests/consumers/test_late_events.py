"""Late and out-of-order transactions through the stream processor: never an exception; within
the allowed lateness they are scored under the event-time policy, beyond it dead-lettered as
too_late; a restart replays them the same way; the decisions equal the batch computation."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from consumer_helpers import SEQ_LEN, SPEC, T0, record, rule_score, tx_doc

from consumers.processor import ProcessorConfig, StreamProcessor
from fraudops.data import tabular
from fraudops.features import EventTimePolicy, admit_stream, compute_batch
from fraudops.schema import Transaction
from fraudops.store import Store


def at(i: int, minutes: float, account: str = "acc-1", amount: float = 20.0) -> dict:
    """The i-th transaction, at T0 + `minutes`."""
    return tx_doc(i, account, amount) | {"timestamp": (T0 + timedelta(minutes=minutes)).isoformat()}


class Recorder:
    """A scoring function that keeps the features of every transaction it scored."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def __call__(self, x: np.ndarray, mask: np.ndarray):
        self.rows.extend(x[:, -1, :])
        return rule_score(x, mask)


def processor(store: Store, new_state, *, lateness: float = 3600.0, snapshot_s: float = 1000.0,
              score=rule_score) -> StreamProcessor:
    config = ProcessorConfig(group_id="g", snapshot_interval_s=snapshot_s,
                             event_time=EventTimePolicy(lateness))
    p = StreamProcessor(config, store=store, score=score, new_state=new_state)
    p.assign([0])
    return p


def reasons(outcome) -> list[bytes]:
    return [dict(m.headers)["dlq.reason"] for m in outcome.outgoing
            if m.topic == "transactions-dlq"]


def history(store: Store, tx_id: str) -> int:
    """How many earlier transactions the account had when `tx_id` was scored (rule_score
    echoes the history feature as the anomaly score)."""
    return round(math.expm1(store.get_decision(tx_id).anomaly_score))


def test_transactions_older_than_their_accounts_previous_one_are_scored(store, new_state) -> None:
    # 2 s and 60 s older than the account's previous transaction: "math domain error" before
    docs = [at(0, 10), at(1, 10 - 2 / 60), at(2, 9), at(3, 11)]
    p = processor(store, new_state)
    outcome = p.process([record(d, i) for i, d in enumerate(docs)])
    assert outcome.scored == 4 and reasons(outcome) == []
    p.persist(outcome)
    assert [history(store, f"tx-{i}") for i in range(4)] == [0, 1, 2, 3]
    samples = {s.name: s for s in p.metrics.registry.collect()}
    late = samples["fraud_consumer_late_events"].samples
    assert [(s.labels, s.value) for s in late if s.name.endswith("_total")] == [
        ({"outcome": "accepted"}, 2.0)]
    lateness = p.metrics.registry.get_sample_value("fraud_consumer_event_lateness_seconds_sum")
    assert lateness == pytest.approx(62.0)


def test_a_transaction_later_than_allowed_is_dead_lettered_too_late(store, new_state) -> None:
    docs = [at(0, 120), at(1, 59), at(2, 61), at(3, 121)]  # tx-1 is 61 minutes late
    p = processor(store, new_state)
    outcome = p.process([record(d, i) for i, d in enumerate(docs)])
    assert reasons(outcome) == [b"too_late"] and outcome.scored == 3
    dead, = (m for m in outcome.outgoing if m.topic == "transactions-dlq")
    assert b"3660.000 s behind" in dict(dead.headers)["dlq.detail"]
    p.persist(outcome)
    assert store.get_decision("tx-1") is None
    assert [history(store, f"tx-{i}") for i in (0, 2, 3)] == [0, 1, 2]  # tx-1 never applied
    value = p.metrics.registry.get_sample_value
    assert value("fraud_consumer_late_events_total", {"outcome": "too_late"}) == 1
    assert value("fraud_consumer_dead_letters_total", {"reason": "too_late"}) == 1


def test_unlimited_lateness_scores_every_late_transaction(store, new_state) -> None:
    docs = [at(0, 10_000), at(1, 0), at(2, 5)]
    p = processor(store, new_state, lateness=float("inf"))
    outcome = p.process([record(d, i) for i, d in enumerate(docs)])
    assert outcome.scored == 3 and reasons(outcome) == []


def late_stream(n: int = 60) -> list:
    """Three accounts, every 5th transaction held back by 2 to 150 minutes (some of them more
    than an hour behind their account's latest transaction)."""
    docs = []
    for i in range(n):
        minutes = 10.0 * i - (2 + (i * 37) % 148 if i % 5 == 4 else 0)
        docs.append(at(i, minutes, f"acc-{i % 3}", 10.0 + i))
    return [record(d, i) for i, d in enumerate(docs)]


def run(p: StreamProcessor, records: list, batch: int = 7) -> None:
    for start in range(0, len(records), batch):
        p.persist(p.process(records[start:start + batch]))


def decisions(store: Store) -> dict:
    return {d.transaction_id: (d.decision, round(d.anomaly_score, 5))
            for d in store.scored_window()}


@pytest.mark.parametrize("snapshot_s", [0.0, 1000.0])
def test_a_restart_replays_late_and_too_late_transactions_as_the_first_time(
        tmp_path, new_state, snapshot_s: float) -> None:
    records = late_stream()
    reference = Store.from_url(f"sqlite:///{tmp_path / 'ref.db'}")
    run(processor(reference, new_state, snapshot_s=snapshot_s), records)
    crashed = Store.from_url(f"sqlite:///{tmp_path / 'crash.db'}")
    first = processor(crashed, new_state, snapshot_s=snapshot_s)
    run(first, records[:33])
    first.process(records[33:40])  # the process dies before this batch is durable
    second = processor(crashed, new_state, snapshot_s=snapshot_s)
    seek = second.assign([0])[0]
    run(second, records[seek:])
    assert decisions(crashed) == decisions(reference)
    assert 0 < len(decisions(reference)) < len(records)  # some were too late


def test_decisions_follow_the_batch_computation_under_the_policy(store, new_state) -> None:
    records = late_stream(90)
    recorder = Recorder()
    p = processor(store, new_state, score=recorder)
    decided = []
    for start in range(0, len(records), 11):
        outcome = p.process(records[start:start + 11])
        decided += [d.transaction_id for d in outcome.writes.decisions]
        p.persist(outcome)
    events = [Transaction.model_validate_json(r.value) for r in records]
    admission = admit_stream(tabular.from_transactions(events), EventTimePolicy(3600.0))
    assert admission.frame["transaction_id"].tolist() == decided
    batch = compute_batch(admission.frame, SPEC, arrival_order=True)
    np.testing.assert_allclose(np.stack(recorder.rows), batch, atol=1e-6)
    assert SEQ_LEN == p.partitions[0].features.seq_len
