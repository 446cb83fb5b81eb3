"""Idempotency by transaction id, and no message stopping the stream, through the processor.

A transaction decided once is never applied to the state nor scored again: a redelivery gets
exactly the stored decision again, another content under a known id is dead-lettered
(conflicting_duplicate), across batches in flight, restarts and new consumer groups. Whatever
handling one message raises dead-letters that message; a storm of dead letters stops the loop.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import timedelta

import pytest
from consumer_helpers import T0, record, rule_score, tx_doc

from consumers.app import Loop, _Exit
from consumers.deadletters import DeadLetterBreaker, RateLimitedLog
from consumers.processor import ProcessorConfig, StreamProcessor
from consumers.settings import ConsumerSettings
from fraudops.features import OnlineFeatureState
from fraudops.store import StaleCheckpointError, Store

DECISIONS, DLQ = "fraud-decisions", "transactions-dlq"


def processor(store: Store, new_state, *, group: str = "g", partitions=(0,),
              snapshot_s: float = 1000.0, **config) -> StreamProcessor:
    p = StreamProcessor(ProcessorConfig(group_id=group, snapshot_interval_s=snapshot_s, **config),
                        store=store, score=rule_score, new_state=new_state)
    p.assign(partitions)
    return p


def published(outcome, topic: str = DECISIONS) -> dict[str, list[bytes]]:
    """transaction id -> the records published for it on `topic`."""
    out: dict[str, list[bytes]] = {}
    for message in outcome.outgoing:
        if message.topic == topic:
            out.setdefault(json.loads(message.value)["transaction_id"], []).append(message.value)
    return out


def reasons(outcome) -> list[bytes]:
    return [dict(m.headers)["dlq.reason"] for m in outcome.outgoing if m.topic == DLQ]


def history(store: Store, tx_id: str) -> int:
    """Earlier transactions of the account when `tx_id` was scored (rule_score's anomaly)."""
    return round(math.expm1(store.get_decision(tx_id).anomaly_score))


def records(docs: list, start: int = 0, partition: int = 0) -> list:
    return [record(d, start + i, partition) for i, d in enumerate(docs)]


# -- redeliveries and conflicting duplicates ------------------------------------------------------


def test_redelivery_in_the_same_batch_is_published_again_not_applied(store, new_state) -> None:
    docs = [tx_doc(0), tx_doc(1), tx_doc(0), tx_doc(2)]
    p = processor(store, new_state)
    outcome = p.process(records(docs))
    assert outcome.scored == 3 and reasons(outcome) == []
    first, again = published(outcome)["tx-0"]
    assert first == again
    p.persist(outcome)
    assert [history(store, f"tx-{i}") for i in range(3)] == [0, 1, 2]  # tx-0 applied once
    value = p.metrics.registry.get_sample_value
    assert value("fraud_consumer_duplicates_total", {"outcome": "republished"}) == 1


def test_redelivery_after_the_decision_is_durable_gets_the_stored_bytes(store, new_state) -> None:
    p = processor(store, new_state)
    first = p.process(records([tx_doc(0, amount=50_000.0), tx_doc(1)]))
    p.persist(first)
    later = p.process(records([tx_doc(0, amount=50_000.0), tx_doc(2)], start=2))
    assert published(later)["tx-0"] == published(first)["tx-0"]  # "block", byte for byte
    assert later.scored == 1 and not published(later, "fraud-alerts")  # alerted once
    p.persist(later)
    assert history(store, "tx-2") == 2
    assert store.counts()["decisions"] == 3 and store.counts()["alerts"] == 1


def test_a_reformatted_redelivery_is_the_same_transaction(store, new_state) -> None:
    p = processor(store, new_state)
    p.persist(p.process(records([tx_doc(0)])))
    doc = dict(reversed(tx_doc(0).items()))  # other key order, the same time in another zone
    doc["timestamp"] = (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "+01:00")
    doc["currency"] = "USD"  # the default, now explicit
    outcome = p.process(records([doc], start=1))
    assert reasons(outcome) == [] and list(published(outcome)) == ["tx-0"]


@pytest.mark.parametrize("durable", [False, True])
def test_another_content_under_a_known_id_is_dead_lettered(store, new_state,
                                                            durable: bool) -> None:
    p = processor(store, new_state)
    first = p.process(records([tx_doc(0), tx_doc(1)]))
    if durable:
        p.persist(first)
    conflicting = records([tx_doc(0, amount=99.0), tx_doc(2)], start=2)
    outcome = p.process(conflicting)
    assert reasons(outcome) == [b"conflicting_duplicate"] and list(published(outcome)) == ["tx-2"]
    dead = next(m for m in outcome.outgoing if m.topic == DLQ)
    assert dead.value == conflicting[0].value
    if not durable:
        p.persist(first)
    p.persist(outcome)
    assert store.get_decision("tx-0").amount == 20.0 and history(store, "tx-2") == 2
    value = p.metrics.registry.get_sample_value
    assert value("fraud_consumer_duplicates_total", {"outcome": "conflicting"}) == 1


def test_a_known_id_from_another_account_and_partition_is_conflicting(store, new_state) -> None:
    p = processor(store, new_state, partitions=(0, 1))
    p.persist(p.process(records([tx_doc(0, "acc-1")])))
    outcome = p.process(records([tx_doc(0, "acc-2")], partition=1))
    assert reasons(outcome) == [b"conflicting_duplicate"]
    assert "acc-2" not in p.partitions[1].features.accounts


def test_redelivery_of_a_transaction_in_flight_waits_for_its_decision(store, new_state) -> None:
    """Pipelined: the next batch is ingested while the previous one is being scored."""
    p = processor(store, new_state)
    p.ingest(records([tx_doc(0, amount=50_000.0), tx_doc(1)]))
    first = p.take()
    p.ingest(records([tx_doc(1), tx_doc(0, amount=1.0), tx_doc(2)], start=2))
    second = p.take()
    decided_first, decided_second = p.decide(first), p.decide(second)
    assert published(decided_second)["tx-1"] == published(decided_first)["tx-1"]
    assert reasons(decided_second) == [b"conflicting_duplicate"]
    p.persist(decided_first)
    p.persist(decided_second)
    assert history(store, "tx-2") == 2 and len(p.in_flight) == 0


# -- across restarts, rebalances and consumer groups ----------------------------------------------


def stream_with_duplicates(n: int = 60) -> list:
    """Three accounts; every 6th record repeats an earlier one, every 13th changes one."""
    docs = []
    for i in range(n):
        if i % 6 == 5:
            docs.append(docs[i - 4])
        elif i % 13 == 12:
            docs.append(docs[i - 7] | {"amount": 1.0 + i})
        else:
            docs.append(tx_doc(i, f"acc-{i % 3}", 10.0 + i))
    return records(docs)


def run(p: StreamProcessor, batch_records: list, size: int = 7) -> dict[str, set[bytes]]:
    out: dict[str, set[bytes]] = {}
    for start in range(0, len(batch_records), size):
        outcome = p.process(batch_records[start:start + size])
        for tx_id, values in published(outcome).items():
            out.setdefault(tx_id, set()).update(values)
        p.persist(outcome)
    return out


def stored(store: Store) -> dict:
    return {d.transaction_id: (d.decision, round(d.anomaly_score, 5))
            for d in store.scored_window()}


@pytest.mark.parametrize("snapshot_s", [0.0, 1000.0])
def test_a_restart_replays_duplicates_as_the_first_time(tmp_path, new_state,
                                                         snapshot_s: float) -> None:
    """A new processor on the same store: the replayed range holds redeliveries and
    conflicting duplicates, which were not applied then and are not applied now."""
    stream = stream_with_duplicates()
    reference = Store.from_url(f"sqlite:///{tmp_path / 'ref.db'}")
    run(processor(reference, new_state, snapshot_s=snapshot_s), stream)
    crashed = Store.from_url(f"sqlite:///{tmp_path / 'crash.db'}")
    first = processor(crashed, new_state, snapshot_s=snapshot_s)
    before = run(first, stream[:30])
    first.process(stream[30:38])  # dies before this batch is durable
    second = processor(crashed, new_state, snapshot_s=snapshot_s)
    seek = second.assign([0])[0]
    after = run(second, stream[seek:])
    assert stored(crashed) == stored(reference)
    for tx_id in before.keys() & after.keys():  # published again: the same bytes
        assert before[tx_id] == after[tx_id], tx_id


def test_a_new_consumer_group_rebuilds_the_state_without_deciding_again(store,
                                                                        new_state) -> None:
    """Another group (or lost checkpoints) reads the topic from the start: every decision is
    published again as stored, each record is applied to the state once, nothing is re-scored."""
    stream = stream_with_duplicates(30)
    first = run(processor(store, new_state, group="g1"), stream)
    again = processor(store, new_state, group="g2")
    outcome = again.process(stream)
    assert outcome.scored == 0 and outcome.writes.decisions == []
    assert {k: set(v) for k, v in published(outcome).items()} == first
    again.persist(outcome)
    again.persist(again.process(records([tx_doc(30, "acc-0")], start=30)))
    # acc-0 decided tx-0, 3, 6, 9, 15, 18, 21, 24, 27 (tx-12 was a conflicting copy of tx-1)
    assert history(store, "tx-30") == 9


def test_records_of_a_dropped_batch_are_new_again_after_a_resync(store, new_state) -> None:
    zombie = processor(store, new_state)
    owner = processor(store, new_state)
    stream = stream_with_duplicates(12)
    owner.persist(owner.process(stream[:3]))
    stale = zombie.process(stream[:8])
    assert len(zombie.in_flight) > 0
    with pytest.raises(StaleCheckpointError):
        zombie.persist(stale)
    assert zombie.resync([0]) == {0: 3} and len(zombie.in_flight) == 0
    run(zombie, stream[3:])
    assert set(stored(store)) == {json.loads(r.value)["transaction_id"] for r in stream}


def test_revoked_partitions_forget_their_transactions_in_flight(store, new_state) -> None:
    p = processor(store, new_state, partitions=(0, 1))
    p.ingest(records([tx_doc(0, "acc-1")]) + records([tx_doc(1, "acc-2")], partition=1))
    p.revoke([1])
    assert p.in_flight.get("tx-0") is not None and p.in_flight.get("tx-1") is None
    assert p.discard_pending() and len(p.in_flight) == 0


# -- labels ---------------------------------------------------------------------------------------


def test_labels_unknown_duplicate_and_malformed_have_defined_outcomes(store, new_state) -> None:
    p = processor(store, new_state)
    p.persist(p.process(records([tx_doc(0), tx_doc(1)])))
    labels = [record({"transaction_id": "tx-0", "label": 1}, 0, topic="labels"),
              record({"transaction_id": "tx-0", "label": 0, "note": "corrected"}, 1,
                     topic="labels"),
              record({"transaction_id": "tx-404", "label": 1}, 2, topic="labels"),
              record(b'{"transaction_id": "tx-1", "label": "yes"}', 3, topic="labels"),
              record(b"\xff", 4, topic="labels")]
    mixed = [record(tx_doc(2), 2), record({"transaction_id": "tx-2", "label": 1}, 5,
                                          topic="labels")]
    outcome = p.process(labels + mixed)
    assert reasons(outcome) == [b"schema_violation", b"invalid_json"]
    p.persist(outcome)
    assert (store.get_label("tx-0").label, store.get_label("tx-0").note) == (0, "corrected")
    assert store.get_label("tx-404").label == 1  # kept: it joins once tx-404 is decided
    value = p.metrics.registry.get_sample_value
    assert value("fraud_consumer_labels_unknown_transaction_total") == 1  # tx-2 was in flight


# -- no message can stop the stream ---------------------------------------------------------------


class BuggyState(OnlineFeatureState):
    """Feature state with a bug that only one account's transactions hit."""

    def update(self, tx, given=None):
        if tx.account_id == "acc-bug":
            raise ZeroDivisionError("a bug in the features")
        return super().update(tx, given)


def test_an_exception_while_handling_one_message_dead_letters_it(store, new_state,
                                                                 monkeypatch) -> None:
    spec, seq_len = new_state().spec, new_state().seq_len
    p = processor(store, lambda: BuggyState(spec, seq_len))
    import consumers.processor as module

    real_parse = module.parse_transaction

    def parse(value, limit):
        if b"explode" in value:
            raise RecursionError("a parser bug")
        return real_parse(value, limit)

    monkeypatch.setattr(module, "parse_transaction", parse)
    docs = [tx_doc(0), tx_doc(1, "acc-bug"), tx_doc(2, merchant_id="explode"), tx_doc(3)]
    outcome = p.process(records(docs))
    dead = [dict(m.headers) for m in outcome.outgoing if m.topic == DLQ]
    assert [(h["dlq.reason"], h["dlq.error"]) for h in dead] == [
        (b"processing_error", b"ZeroDivisionError"), (b"processing_error", b"RecursionError")]
    assert outcome.scored == 2 and outcome.offsets == {("transactions", 0): 4}
    p.persist(outcome)
    assert history(store, "tx-3") == 1


def test_the_breaker_trips_when_most_of_a_window_is_dead_lettered() -> None:
    breaker = DeadLetterBreaker(window=10, max_share=0.5)
    for dead in [True] * 9:
        breaker.record(dead)
    assert not breaker.tripped  # the window is not full yet
    breaker.record(False)
    assert breaker.tripped and breaker.share == 0.9
    for _ in range(5):
        breaker.record(False)
    assert not breaker.tripped and "4 of the last 10" in breaker.describe()
    off = DeadLetterBreaker(window=0, max_share=0.5)
    off.record(True)
    assert not off.tripped


class Source:
    def __init__(self) -> None:
        self.commits: list = []

    def commit(self, offsets: dict, *, wait: bool = False) -> bool:
        self.commits.append(dict(offsets))
        return True

    def seek(self, topic: str, partition: int, offset: int) -> None:
        pass


class Sink:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, messages: list) -> Sink:
        self.sent.extend(messages)
        return self

    def wait(self) -> None:
        pass


class Dispatcher:
    def wake(self) -> None:
        pass


def test_a_broken_producer_stops_the_loop_without_committing(store, new_state) -> None:
    p = processor(store, new_state, breaker_window=20, breaker_share=0.5)
    source, sink = Source(), Sink()
    loop = Loop(source, sink, p, Dispatcher(), threading.Event(), ConsumerSettings(),
                p.metrics)
    good = [record(tx_doc(i), i) for i in range(15)]
    loop.handle(good[:10] + [record(b"garbage", 10 + i) for i in range(5)])  # 1 in 3: goes on
    assert store.counts()["decisions"] == 10
    storm = [record(b"{", 15 + i) for i in range(15)]
    with pytest.raises(_Exit) as stopped:
        loop.handle(storm)
    assert stopped.value.code == 1
    assert source.commits == [{("transactions", 0): 15}]  # the storm's batch is not committed
    assert store.load_checkpoints("g", "transactions")[0].next_offset == 15
    loop.pipeline.close()


def test_dead_letter_warnings_are_rate_limited(caplog) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.dlq"), interval_s=10.0, burst=3,
                             clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.dlq"):
        for i in range(50):
            limited.warning("invalid_json", "dead-lettering %d", i)
        limited.warning("too_late", "late %d", 0)
        limited.flush()  # the interval is not over: nothing to report yet
        now[0] = 11.0
        limited.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["dead-lettering 0", "dead-lettering 1", "dead-lettering 2", "late 0",
                     "... and 47 more invalid_json warnings in 10 s (not logged one by one)"]


def test_the_processor_logs_a_storm_of_poison_in_a_few_lines(store, new_state, caplog) -> None:
    p = processor(store, new_state)
    with caplog.at_level(logging.WARNING, logger="consumers.processor"):
        p.process([record(b"nope", i) for i in range(200)])
    assert len(caplog.records) <= 5


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_idempotency_across_a_restart_on_postgresql(postgres_url, new_state) -> None:
    store = Store.from_url(postgres_url)
    try:
        stream = stream_with_duplicates(40)
        first = processor(store, new_state)
        before = run(first, stream[:25])
        first.process(stream[25:31])  # dies before this batch is durable
        second = processor(store, new_state)
        seek = second.assign([0])[0]
        after = run(second, stream[seek:])
        for tx_id in before.keys() & after.keys():
            assert before[tx_id] == after[tx_id], tx_id
        ids = {json.loads(r.value)["transaction_id"] for r in stream}
        decided = store.decided(ids)
        assert decided.keys() == ids == stored(store).keys()
        for tx_id, decision in decided.items():  # each decided from its first record
            first_offset = next(r.offset for r in stream
                                if json.loads(r.value)["transaction_id"] == tx_id)
            assert decision.source.offset == first_offset
    finally:
        store.close()
