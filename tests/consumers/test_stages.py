"""The entity stages without a broker: a stream re-keyed by merchant, then by device, then
scored, gives every feature the batch computation gives in the order each stage consumed, over
random partition counts, interleavings, late events, duplicates and labels (hypothesis); a
restarted stage produces the same records, and a repeat counts once."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from consumer_helpers import SEQ_LEN, rule_score
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stage_helpers import (
    ENTITY_COLUMNS,
    SPEC,
    Log,
    consumed_order,
    encode,
    expected_features,
    interleave,
    partition_of,
    phased_stream,
)

from consumers.messages import Incoming, given_features
from consumers.processor import ProcessorConfig, StreamProcessor
from consumers.stages import StageConfig, StageProcessor
from fraudops.features import EventTimePolicy, OnlineFeatureState
from fraudops.schema import Transaction
from fraudops.settings import TopicSettings
from fraudops.store import Store

TOPICS = TopicSettings()


class StageTopology:
    """Router, merchant and device stages and a scoring consumer over in-memory topics."""

    def __init__(self, store: Store, partitions: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.logs = {name: Log(name, partitions) for name in (
            TOPICS.transactions, TOPICS.labels, TOPICS.by_merchant, TOPICS.by_device,
            TOPICS.enriched)}
        self.stages = {name: self._stage(store, name, partitions)
                       for name in ("router", "merchant", "device")}
        self.consumed: dict[str, list] = {name: [] for name in ("merchant", "device", "account")}
        self.cursors: dict[tuple[str, int], int] = {}
        self.rows: dict[str, np.ndarray] = {}
        self.decided: list[str] = []
        config = ProcessorConfig(group_id="scorer",
                                 topics=TOPICS.model_copy(update={"transactions": TOPICS.enriched}),
                                 event_time=EventTimePolicy(float("inf")))
        self.scorer = StreamProcessor(
            config, store=store, score=self._score,
            new_state=lambda: OnlineFeatureState(SPEC, SEQ_LEN, ("account",)))
        self.scorer.assign(range(partitions))

    @staticmethod
    def _stage(store: Store, name: str, partitions: int) -> StageProcessor:
        stage = StageProcessor(StageConfig(name, f"g-{name}", TOPICS, snapshot_interval_s=0.0,
                                           event_time=EventTimePolicy(float("inf"))),
                               store=store)
        for topic in stage.config.inputs:
            stage.assign(topic, range(partitions))
        return stage

    def _score(self, x, mask):
        self._scored = x[:, -1, :].astype(np.float64)
        return rule_score(x, mask)

    def produce(self, transactions: list[dict], labels: list[dict]) -> None:
        for doc in transactions:
            self.logs[TOPICS.transactions].append(doc["account_id"].encode(), encode(doc))
        for doc in labels:
            self.logs[TOPICS.labels].append(doc["account_id"].encode(), encode(doc))

    def _new(self, topics: list[str]) -> list:
        """The records of `topics` not yet consumed, partitions interleaved at random."""
        parts = []
        for topic in topics:
            for p, records in enumerate(self.logs[topic].parts):
                start = self.cursors.get((topic, p), 0)
                parts.append(records[start:])
                self.cursors[(topic, p)] = len(records)
        return interleave(parts, self.rng)

    def _batches(self, records: list):
        while records:
            size = int(self.rng.integers(1, 12))
            yield records[:size]
            records = records[size:]

    def drain(self) -> None:
        """Every stage, then the scoring consumer, processes what is waiting for it."""
        for name, stage in self.stages.items():
            records = self._new(stage.config.inputs)
            if name in self.consumed:
                self.consumed[name] += records
            for batch in self._batches(records):
                outcome = stage.process(batch)
                stage.persist(outcome)
                self.logs[stage.config.output].extend(outcome.outgoing)
        records = self._new([TOPICS.enriched])
        self.consumed["account"] += records
        for batch in self._batches(records):
            self._scored = None
            outcome = self.scorer.process(batch)
            self.scorer.persist(outcome)
            for i, decision in enumerate(outcome.writes.decisions):
                self.rows[decision.transaction_id] = self._scored[i]
                self.decided.append(decision.transaction_id)


def run_pipeline(seed: int, partitions: int, phases: int = 3) -> tuple[StageTopology, object]:
    stream = phased_stream(seed, phases=phases)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'store.db'}")
        pipeline = StageTopology(store, partitions, np.random.default_rng(seed))
        for transactions, labels in stream.phases:
            pipeline.produce(transactions, labels)
            pipeline.drain()
        store.close()
    return pipeline, stream


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), partitions=st.integers(1, 3))
def test_stage_features_equal_batch_in_each_stages_order(seed: int, partitions: int) -> None:
    pipeline, stream = run_pipeline(seed, partitions)
    transactions = stream.transactions
    assert sorted(pipeline.decided) == sorted(d["transaction_id"] for d in transactions)
    orders = {name: consumed_order(records) for name, records in pipeline.consumed.items()}
    expected = expected_features(transactions, stream.labels, orders)
    for tx_id, row in expected.items():
        np.testing.assert_allclose(pipeline.rows[tx_id], row, atol=1e-6, rtol=0,
                                   err_msg=f"{tx_id} ({SPEC.names})")


def test_the_features_see_every_partitions_traffic() -> None:
    """Not a parity of what one partition sees: with 3 partitions the merchants' counts are
    those of their whole traffic (the single consumer's per-partition counts differ)."""
    pipeline, stream = run_pipeline(seed=11, partitions=3, phases=2)
    count = SPEC.names.index("merchant_count_7d_log")
    fraud = SPEC.names.index("merchant_labelled_28d_log")
    rows = np.stack([pipeline.rows[d["transaction_id"]] for d in stream.transactions
                     if d["merchant_id"]])
    local = per_partition_features(stream, partitions=3)
    assert not np.allclose(rows[:, count], local[:, count])
    assert (rows[:, fraud] > 0).any()


def per_partition_features(stream, partitions: int) -> np.ndarray:
    """What single consumers computed: each partition's own share of a merchant's traffic."""
    states = [OnlineFeatureState(SPEC, SEQ_LEN) for _ in range(partitions)]
    rows = []
    for transactions, _ in stream.phases:
        seen = set()
        for doc in transactions:
            if doc["transaction_id"] in seen:
                continue
            seen.add(doc["transaction_id"])
            state = states[partition_of(doc["account_id"].encode(), partitions)]
            tx = _transaction(doc)
            row = state.features(tx)
            if doc["merchant_id"]:
                rows.append(row)
    return np.stack(rows).astype(np.float64)


def _transaction(doc: dict) -> Transaction:
    return Transaction.model_validate(doc)


def test_a_restarted_stage_produces_the_same_records_and_counts_a_repeat_once(tmp_path) -> None:
    """The merchant stage crashes after producing a batch but before storing its position:
    restored from its snapshot it produces the same records again; re-sent by the router, the
    same transactions count once."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    stream = phased_stream(5, phases=1)
    log = Log(TOPICS.by_merchant, 1)
    for doc in stream.transactions:
        log.append(doc["merchant_id"].encode() if doc["merchant_id"] else b"", encode(doc))
    records = log.parts[0]

    def stage() -> StageProcessor:
        s = StageProcessor(StageConfig("merchant", "g", TOPICS, snapshot_interval_s=1e9),
                           store=store)
        s.assign(TOPICS.by_merchant, [0])
        return s

    first = stage()
    first.persist(first.process(records[:15]))
    lost = first.process(records[15:])  # produced, never stored: the crash
    second = stage()
    again = second.process(records[15:])
    assert [(m.key, m.value, m.headers) for m in again.outgoing] == \
           [(m.key, m.value, m.headers) for m in lost.outgoing]
    # the router re-sends everything (its own crash): nothing counts twice
    replayed = [r.__class__(r.topic, r.partition, len(records) + i, r.key, r.value)
                for i, r in enumerate(records)]
    repeats = second.process(replayed)
    assert all(given_features(_incoming(m)) == {} for m in repeats.outgoing)
    final = _transaction({**stream.transactions[-1], "transaction_id": "new",
                          "timestamp": stream.transactions[-1]["timestamp"]})
    state = second.partitions[(TOPICS.by_merchant, 0)].features
    reference = OnlineFeatureState(SPEC, 1, ("merchant",))
    for doc in stream.transactions:
        reference.entity_update(_transaction(doc), "merchant")
    np.testing.assert_array_equal(state.entity_update(final, "merchant"),
                                  reference.entity_update(final, "merchant"))
    store.close()


def _incoming(message) -> Incoming:
    return Incoming(message.topic, 0, 0, message.key, message.value, -1, message.headers)


def test_a_malformed_record_goes_to_the_dead_letter_topic_with_its_reason(tmp_path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    stage = StageProcessor(StageConfig("router", "g", TOPICS), store=store)
    stage.assign(TOPICS.transactions, [0])
    log = Log(TOPICS.transactions, 1)
    log.append(b"a", b"{not json")
    log.append(b"a", json.dumps({"transaction_id": "x"}).encode())
    outcome = stage.process(log.parts[0])
    reasons = [dict(m.headers)["dlq.reason"] for m in outcome.outgoing]
    assert [m.topic for m in outcome.outgoing] == [TOPICS.dead_letter] * 2
    assert reasons == [b"invalid_json", b"schema_violation"]
    assert outcome.offsets == {(TOPICS.transactions, 0): 2}
    # lateness is judged here, in the account's order of `transactions`, as by the consumer
    on_time = {"transaction_id": "t1", "account_id": "a", "amount": 1.0,
               "timestamp": "2026-03-01T12:00:00+00:00"}
    log.append(b"a", encode(on_time))
    log.append(b"a", encode({**on_time, "transaction_id": "t2",
                             "timestamp": "2026-03-01T10:59:59+00:00"}))
    log.append(b"a", encode(on_time))  # a repeat: passed on (the consumer republishes it)
    outcome = stage.process(log.parts[0][2:])
    assert [(m.topic, dict(m.headers).get("dlq.reason")) for m in outcome.outgoing] == [
        (TOPICS.by_merchant, None), (TOPICS.dead_letter, b"too_late"), (TOPICS.by_merchant, None)]
    store.close()


@pytest.mark.parametrize("entity", ["merchant", "device"])
def test_the_entity_columns_are_the_single_consumers(entity: str) -> None:
    """One implementation: a stage's values are the columns the all-local state computes."""
    stream = phased_stream(3, phases=1)
    local = OnlineFeatureState(SPEC, SEQ_LEN)
    stage = OnlineFeatureState(SPEC, 1, (entity,))
    for doc in stream.transactions:
        tx = _transaction(doc)
        row = local.features(tx)
        values = stage.entity_update(tx, entity)
        if values is not None:
            np.testing.assert_array_equal(row[ENTITY_COLUMNS[entity]],
                                          values.astype(np.float32))
