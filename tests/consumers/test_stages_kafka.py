"""The entity stages on the real broker: 3 partitions, two instances of every stage and two
scoring consumers, labels interleaved by time. Every feature of every decided transaction
equals the batch computation, each entity's in the order its stage consumed (read back from
the internal topics)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from consumer_helpers import SEQ_LEN, consumer_settings, produce, rule_score
from stage_helpers import (
    SPEC,
    consumed_order,
    expected_features,
    phased_stream,
    read_back,
    stage_topics,
)

from consumers.app import ConsumerApp, ModelContract
from consumers.stages import STAGES, StageApp
from fraudops.store import Store
from fraudops.testing import wait_until

pytestmark = pytest.mark.integration

AMOUNT = SPEC.names.index("amount_log")


def amount_key(amount_log) -> float:
    """The amount a scored row's (float32) amount_log stands for: the stream's amounts are
    distinct, so it names the transaction."""
    return round(float(np.expm1(np.float64(amount_log))), 2)


class Recording:
    """A scoring consumer on a thread that keeps every scored row's features, by amount."""

    def __init__(self, settings, rows: dict) -> None:
        def score(x, mask):
            for row in x[:, -1, :].astype(np.float64):
                rows.setdefault(amount_key(row[AMOUNT]), []).append(row)
            return rule_score(x, mask)
        self.app = ConsumerApp(settings, score=score, model=ModelContract(SPEC, SEQ_LEN, "rule/1"))
        self.thread = threading.Thread(target=self.app.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.stop.set()
        self.thread.join(30)


class Stage:
    """A stage on a thread."""

    def __init__(self, settings, name: str) -> None:
        self.app = StageApp(settings, name)
        self.thread = threading.Thread(target=self.app.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.stop.set()
        self.thread.join(30)


def test_stage_features_equal_batch_across_partitions_and_replicas(
        kafka_broker, tmp_path, group_id_factory) -> None:
    topics = stage_topics(kafka_broker)
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    settings = consumer_settings(kafka_broker, topics, str(store.engine.url),
                                 group_id_factory("stages"), entity_stages=True,
                                 allowed_lateness_s=float("inf"))
    stream = phased_stream(21, phases=3, per_phase=60)
    rows: dict = {}
    running = [Stage(settings, name) for name in STAGES for _ in range(2)]
    running += [Recording(settings, rows) for _ in range(2)]
    decided, judged = 0, set()
    try:
        for transactions, labels in stream.phases:
            produce(kafka_broker, topics.transactions, transactions)
            decided += len({d["transaction_id"] for d in transactions})
            wait_until(lambda n=decided: store.counts()["decisions"] >= n, timeout=120)
            # the labels known before the next phase: through every stage before it starts
            produce(kafka_broker, topics.labels, labels)
            judged |= {d["transaction_id"] for d in labels}
            expected_labels = len(judged)
            wait_until(lambda n=expected_labels: store.counts()["labels"] >= n, timeout=120)
    finally:
        for member in running:
            member.stop()
    orders = {"merchant": consumed_order(read_back(kafka_broker, topics.by_merchant)),
              "device": consumed_order(read_back(kafka_broker, topics.by_device)),
              "account": consumed_order(read_back(kafka_broker, topics.enriched))}
    transactions = stream.transactions
    expected = expected_features(transactions, stream.labels, orders)
    assert store.counts()["decisions"] == len(transactions)
    for doc in transactions:
        scored = rows.get(amount_key(np.float32(np.log1p(doc["amount"]))), [])
        assert len(scored) == 1, f"{doc['transaction_id']} scored {len(scored)} times"
        np.testing.assert_allclose(scored[0], expected[doc["transaction_id"]], atol=1e-6,
                                   rtol=0, err_msg=doc["transaction_id"])
    # not a parity of empty state: merchants and devices saw traffic and confirmed fraud
    table = np.stack([expected[d["transaction_id"]] for d in transactions])
    for name in ("merchant_count_24h_log", "device_count_24h_log", "merchant_fraud_28d_log",
                 "device_labelled_28d_log"):
        assert (table[:, SPEC.names.index(name)] > 0).any(), name
