"""The consumer loop in-process against the real broker (Apache Kafka; tansu with FRAUDOPS_TEST_KAFKA=tansu), with the rule scorer injected.

The end-to-end tests with the real predictor in subprocesses are in test_consumer_e2e.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, defaultdict

import pytest
from consumer_helpers import (
    SEQ_LEN,
    SPEC,
    consumer_settings,
    make_topics,
    produce,
    read_topic,
    rule_score,
    tx_doc,
)

from consumers.app import ConsumerApp, ModelContract
from fraudops.store import Store
from fraudops.store.models import Base
from fraudops.testing import wait_until

pytestmark = pytest.mark.integration


class Running:
    """A ConsumerApp on a thread."""

    def __init__(self, settings) -> None:
        self.app = ConsumerApp(settings, score=rule_score,
                               model=ModelContract(SPEC, SEQ_LEN, "rule/1"))
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.app.run()

    def stop(self) -> int | None:
        self.app.stop.set()
        self.thread.join(30)
        return self.code


def stream(n: int, accounts: int = 7, start: int = 0) -> list[dict]:
    return [tx_doc(i, f"acc-{i % accounts}", 50_000.0 if i % 11 == 5 else 10.0 + i)
            for i in range(start, start + n)]


def check_history_continuity(store: Store, docs: list[dict]) -> None:
    """Each decision saw exactly the account's earlier events: state neither reset nor doubled."""
    seen: dict[str, int] = defaultdict(int)
    for doc in docs:
        stored = store.get_decision(doc["transaction_id"])
        assert stored is not None, doc["transaction_id"]
        assert stored.anomaly_score == pytest.approx(math.log1p(seen[doc["account_id"]]),
                                                     abs=1e-4), doc["transaction_id"]
        seen[doc["account_id"]] += 1


@pytest.mark.parametrize("mode", [{"overlap_scoring": False}, {}, {"pipelined": True}],
                         ids=["serial", "overlap", "pipelined"])
def test_stream_with_poison_and_labels(kafka_broker, tmp_path, group_id_factory,
                                       mode: dict) -> None:
    topics = make_topics(kafka_broker)
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite'}")
    docs = stream(300)
    poison = [b"{oops", b"", json.dumps(tx_doc(999, amount=-3)).encode(),
              json.dumps({"transaction_id": "x"}).encode(), b"x" * 70_000]
    produce(kafka_broker, topics.transactions, docs[:150] + poison + docs[150:])
    produce(kafka_broker, topics.labels, [{"transaction_id": "tx-5", "label": 1,
                                           "account_id": "analyst"}])
    settings = consumer_settings(kafka_broker, topics, str(store.engine.url),
                                 group_id_factory("inproc"), **mode)
    running = Running(settings)
    try:
        wait_until(lambda: store.counts()["decisions"] >= 300 and store.counts()["labels"] == 1)
    finally:
        assert running.stop() == 0
    blocked = sum(d["amount"] > 1_000 for d in docs)  # rule_score blocks the 50,000 ones
    assert store.counts() == {"decisions": 300, "alerts": blocked, "notifications": 0,
                              "labels": 1}
    check_history_continuity(store, docs)
    dead = read_topic(kafka_broker, topics.dead_letter, len(poison))
    reasons = Counter(dict(r.headers)["dlq.reason"].decode() for r in dead)
    assert reasons == {"invalid_json": 1, "empty": 1, "absurd_value": 1, "schema_violation": 1,
                       "oversized": 1}
    assert {bytes(r.value) for r in dead} == set(poison)
    decisions = read_topic(kafka_broker, topics.decisions, 300)
    assert {json.loads(r.value)["transaction_id"] for r in decisions} == \
        {d["transaction_id"] for d in docs}
    assert len(read_topic(kafka_broker, topics.alerts, blocked)) == blocked
    labelled, = store.labelled_transactions()
    assert (labelled.transaction_id, labelled.decision) == ("tx-5", "block")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_restart_resumes_state(kafka_broker, tmp_path, group_id_factory, request,
                               database: str) -> None:
    topics = make_topics(kafka_broker)
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if database == "sqlite"
           else request.getfixturevalue("postgres_url"))
    store = Store.from_url(url)
    if database == "postgresql":  # the session's PostgreSQL database is shared: leave it empty
        request.addfinalizer(lambda: Base.metadata.drop_all(store.engine))
    settings = consumer_settings(kafka_broker, topics, url, group_id_factory("restart"))
    docs = stream(400)
    produce(kafka_broker, topics.transactions, docs[:200])
    first = Running(settings)
    try:
        wait_until(lambda: store.counts()["decisions"] >= 200)
    finally:
        assert first.stop() == 0
    produce(kafka_broker, topics.transactions, docs[200:])
    second = Running(settings)
    try:
        wait_until(lambda: store.counts()["decisions"] >= 400)
    finally:
        assert second.stop() == 0
    assert store.counts()["decisions"] == 400
    check_history_continuity(store, docs)
