"""Helpers of the consumer tests: transactions, records, a rule-based scoring function.

`rule_score` stands in for the predictor in the broker-free unit tests (the processor takes any
scoring function); the end-to-end tests use the real KServe predictor.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from consumers.messages import Incoming
from consumers.settings import ConsumerSection, ConsumerSettings
from fraudops.features import build_spec
from fraudops.kafka import make_producer
from fraudops.protocol import ScoreBatch
from fraudops.settings import DatabaseSettings, KafkaSettings, TopicSettings
from fraudops.testing import read_records

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SPEC = build_spec()
SEQ_LEN = 4
AMOUNT = SPEC.names.index("amount_log")
HISTORY = SPEC.names.index("account_history_log")


def tx_doc(i: int, account: str = "acc-1", amount: float = 20.0, **extra: object) -> dict:
    """A valid transaction document, the i-th of its stream (one minute apart)."""
    return {"transaction_id": f"tx-{i}", "account_id": account,
            "timestamp": (T0 + timedelta(minutes=i)).isoformat(), "amount": amount,
            "merchant_id": f"m-{i % 3}", "channel": "online", **extra}


def record(doc: dict | bytes, offset: int, partition: int = 0,
           topic: str = "transactions") -> Incoming:
    value = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    key = None if isinstance(doc, bytes) else doc.get("account_id", "").encode()
    return Incoming(topic, partition, offset, key, value)


def rule_score(x: np.ndarray, mask: np.ndarray) -> ScoreBatch:
    """Probability rises with the amount of the scored (last) transaction."""
    log_amount = x[:, -1, AMOUNT].astype(np.float64)
    probability = 1.0 / (1.0 + np.exp(-(log_amount - 7.0)))
    decision = ["block" if p > 0.9 else "review" if p > 0.5 else "approve" for p in probability]
    # The anomaly score echoes a stateful feature (how many earlier events the account has), so
    # a state that was reset or double-applied shows up in the stored decisions.
    return ScoreBatch(fraud_probability=probability.astype(np.float32),
                      anomaly_score=x[:, -1, HISTORY].astype(np.float32),
                      decision=decision, reason_codes=[("amount_log",)] * len(decision),
                      model_version="rule/1")


def make_topics(broker, partitions: int = 3) -> TopicSettings:
    """Fresh topics for one test (the broker's memory engine never frees a topic)."""
    suffix = uuid.uuid4().hex[:8]
    names = {field: broker.create_topic(f"{field}-{suffix}", partitions)
             for field in ("transactions", "decisions", "alerts", "labels", "dead_letter")}
    return TopicSettings(**names)


def consumer_settings(broker, topics: TopicSettings, db_url: str, group_id: str,
                      **consumer: object) -> ConsumerSettings:
    """Settings of a consumer under test (short snapshot interval, no metrics port)."""
    section = ConsumerSection(group_id=group_id, batch_size=200, batch_max_wait_ms=20,
                              metrics_port=0, snapshot_interval_s=0.5, backoff_max_s=0.5,
                              **consumer)
    return ConsumerSettings(kafka=KafkaSettings(bootstrap_servers=broker.bootstrap, topics=topics),
                            database=DatabaseSettings(url=db_url), consumer=section)


def send_records(broker, topic: str, records: list[tuple[bytes | None, bytes]]
                 ) -> list[tuple[int, int]]:
    """Produce (key, value) records in order, each acknowledged; (partition, offset) of each."""
    producer = make_producer(KafkaSettings(bootstrap_servers=broker.bootstrap),
                             **{"linger.ms": 5})
    reports: list = [None] * len(records)

    def report(index: int):
        return lambda error, message: reports.__setitem__(index, (error, message))

    for index, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report(index))
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.05)
    producer.flush(30)
    failed = [r for r in reports if r is None or r[0] is not None]
    assert not failed, f"{len(failed)} of {len(records)} records not produced: {failed[0]}"
    return [(message.partition(), message.offset()) for _, message in reports]


def produce(broker, topic: str, docs: list) -> dict[str, tuple[int, int]]:
    """Send documents (dicts or raw bytes) keyed by account; returns tx id -> (partition, offset)."""
    placed = send_records(broker, topic, [
        (b"poison", doc) if isinstance(doc, bytes)
        else (str(doc.get("account_id", "")).encode(), json.dumps(doc).encode()) for doc in docs])
    return {doc["transaction_id"]: where for doc, where in zip(docs, placed, strict=True)
            if not isinstance(doc, bytes) and doc.get("transaction_id") is not None}


def decision_id(record) -> str:
    """The transaction id of a `fraud-decisions` record."""
    return json.loads(record.value)["transaction_id"]


def read_topic(broker, topic: str, expected: int, timeout: float = 20.0,
               distinct: Callable | None = None) -> list:
    """All records of `topic`: waits until at least `expected` arrived, or, with `distinct` (a
    key of a record), until `expected` distinct keys did (republished records then do not
    count: a stream with repeats would otherwise be read short); then 0.3 s more for any
    records beyond those."""
    keys: set = set()
    counted = 0
    complete_at: float | None = None

    def enough(records: list) -> bool:
        nonlocal counted, complete_at
        if complete_at is None:
            if distinct is not None:
                keys.update(distinct(r) for r in records[counted:])
                counted = len(records)
            if (len(keys) if distinct is not None else len(records)) >= expected:
                complete_at = time.monotonic()
        return complete_at is not None and time.monotonic() - complete_at >= 0.3

    return read_records(broker.bootstrap, topic, until=enough, timeout=timeout + 0.3)


def stream_records(n: int, accounts: int = 3) -> list[Incoming]:
    """n transaction records on partition 0 (offsets 0..n-1) over a few accounts."""
    return [record(tx_doc(i, f"acc-{i % accounts}", 10.0 + i), i) for i in range(n)]
