"""End to end: `fraudops consume` and `fraudops serve predictor` as real subprocesses, the real
broker (Apache Kafka by default), SQLite store, a real SMTP server. Crashes, outages, poison and rebalances.

Every test checks the same invariants: each produced transaction has exactly one decision row,
its stored fraud probability equals an independent reference computation (so per-account state
was neither reset nor applied twice), and no alert email was sent twice or is missing.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes

import httpx
import pytest
from aiosmtpd.controller import Controller
from consumer_helpers import free_port, make_topics, produce, read_topic, wait_until
from e2e_helpers import (
    Models,
    Service,
    consumer_env,
    predictor_service,
    reference_scores,
    transactions,
    write_models,
)

from fraudops.store import Store

pytestmark = pytest.mark.integration


class Inbox:
    def __init__(self) -> None:
        self.message_ids: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.message_ids.append(message_from_bytes(envelope.content)["Message-ID"])
        return "250 OK"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    return write_models(tmp_path_factory.mktemp("models"), transactions(2000))


@pytest.fixture(scope="module")
def predictor_process(models: Models, tmp_path_factory) -> Iterator[tuple[str, Service]]:
    tmp = tmp_path_factory.mktemp("predictor")
    port = free_port()
    service = predictor_service(models, port, tmp / "home", tmp / "predictor.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_http(f"{url}/v2/models/fraud-scorer/ready")
        yield url, service
    finally:
        service.signal(signal.SIGCONT)
        service.stop()


@pytest.fixture
def predictor(predictor_process: tuple[str, Service]) -> str:
    return predictor_process[0]


@pytest.fixture
def inbox() -> Iterator[tuple[int, Inbox]]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler
    controller.stop()


class Scenario:
    """Topics, store and consumer processes of one test."""

    def __init__(self, broker, tmp_path, group_id: str, predictor_url: str,
                 smtp_port: int | None = None) -> None:
        self.broker, self.tmp_path = broker, tmp_path
        self.topics = make_topics(broker)
        self.db_url = f"sqlite:///{tmp_path / 'store.db'}"
        self.store = Store.from_url(self.db_url)
        extra = {}
        if smtp_port is not None:
            extra = {"FRAUDOPS_NOTIFY__SMTP_HOST": "127.0.0.1",
                     "FRAUDOPS_NOTIFY__SMTP_PORT": str(smtp_port),
                     "FRAUDOPS_NOTIFY__EMAIL_TO": '["fraud-ops@bank.test"]',
                     "FRAUDOPS_NOTIFY__RATE_LIMIT_COUNT": "100000"}
        self.env = consumer_env(broker.bootstrap, self.topics, self.db_url, group_id,
                                predictor_url, **extra)
        self.placed: dict[str, tuple[int, int]] = {}
        self.consumers: list[Service] = []

    def consumer(self, **extra: str) -> Service:
        name = f"consumer-{len(self.consumers)}"
        service = Service(["consume"], {**self.env, **extra}, self.tmp_path / f"{name}.log")
        self.consumers.append(service.start())
        return service

    def produce_slowly(self, docs: list, chunk: int = 100, pause: float = 0.05) -> threading.Thread:
        def run() -> None:
            for start in range(0, len(docs), chunk):
                self.placed |= produce(self.broker, self.topics.transactions,
                                       docs[start:start + chunk])
                time.sleep(pause)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def decided(self) -> int:
        return self.store.counts()["decisions"]

    def stop_all(self) -> None:
        for service in self.consumers:
            service.stop()

    def check(self, models: Models, docs: list[dict]) -> dict[str, tuple[float, str]]:
        """Exactly one decision per transaction, equal to the reference computation."""
        expected = reference_scores(models, self.placed, docs)
        stored = {d.transaction_id: d for d in self.store.scored_window()}
        assert set(stored) == set(expected)
        mismatched = [tx for tx, (p, decision) in expected.items()
                      if abs(stored[tx].fraud_probability - p) > 1e-4
                      or stored[tx].decision != decision]
        assert mismatched == [], f"{len(mismatched)} decisions differ, e.g. {mismatched[:5]}"
        alerts = {tx for tx, (_, decision) in expected.items() if decision != "approve"}
        assert {a.transaction_id for a in self.store.list_alerts(limit=100_000)} == alerts
        return expected


@pytest.mark.parametrize("pipelined", ["false", "true"])
def test_kill_9_mid_stream_then_restart(kafka_broker, tmp_path, group_id_factory, models,
                                        predictor, inbox, pipelined: str) -> None:
    smtp_port, mailbox = inbox
    scenario = Scenario(kafka_broker, tmp_path, group_id_factory("kill9"), predictor, smtp_port)
    scenario.env["FRAUDOPS_CONSUMER__PIPELINED"] = pipelined
    docs = transactions(2000, seed=11)
    try:
        first = scenario.consumer()
        producer = scenario.produce_slowly(docs)
        wait_until(lambda: scenario.decided() >= 600, timeout=90)
        first.signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        killed_at = scenario.decided()
        producer.join(30)
        scenario.consumer()
        wait_until(lambda: scenario.decided() >= len(docs), timeout=90)
        wait_until(lambda: len(mailbox.message_ids) >= len(scenario.store.list_alerts(
            limit=100_000)), timeout=30)
        time.sleep(1.0)  # any duplicate email would arrive now
    finally:
        scenario.stop_all()
    assert killed_at < len(docs)
    expected = scenario.check(models, docs)
    alerts = sorted(tx for tx, (_, decision) in expected.items() if decision != "approve")
    assert sorted(mailbox.message_ids) == sorted(f"<email.{tx}@fraudops>" for tx in alerts)
    assert {n.status for n in scenario.store.notifications()} == {"sent"}
    decisions = read_topic(kafka_broker, scenario.topics.decisions, len(docs))
    assert {json.loads(r.value)["transaction_id"] for r in decisions} == set(expected)


def test_predictor_stopped_mid_stream(kafka_broker, tmp_path, group_id_factory, models,
                                      predictor_process) -> None:
    url, predictor = predictor_process
    scenario = Scenario(kafka_broker, tmp_path, group_id_factory("outage"), url)
    metrics_port = free_port()
    docs = transactions(1200, seed=12)
    try:
        consumer = scenario.consumer(FRAUDOPS_CONSUMER__METRICS_PORT=str(metrics_port),
                                     FRAUDOPS_CONSUMER__PREDICTOR_TIMEOUT_S="0.5")
        scenario.produce_slowly(docs[:600]).join(30)
        wait_until(lambda: scenario.decided() >= 600, timeout=90)
        predictor.signal(signal.SIGSTOP)  # frozen: connections hang, every call times out
        try:
            scenario.produce_slowly(docs[600:]).join(30)
            time.sleep(4.0)  # the predictor stays away for several seconds
            stalled = scenario.decided()
        finally:
            predictor.signal(signal.SIGCONT)
        wait_until(lambda: scenario.decided() >= len(docs), timeout=90)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        consumer.signal(signal.SIGTERM)
        assert consumer.wait() == 0
    finally:
        scenario.stop_all()
    assert stalled == 600  # nothing was decided (or committed) without the predictor
    retries = re.search(r'fraud_consumer_errors_total\{kind="predictor_unavailable"\} (\S+)',
                        metrics)
    assert retries and float(retries.group(1)) >= 1
    scenario.check(models, docs)


def test_poison_mix_and_graceful_sigterm(kafka_broker, tmp_path, group_id_factory, models,
                                         predictor) -> None:
    scenario = Scenario(kafka_broker, tmp_path, group_id_factory("poison"), predictor)
    docs = transactions(1200, seed=13)
    poison = [b"\x00\x01binary", b"{]", b"null", json.dumps({"transaction_id": "p"}).encode(),
              json.dumps({**docs[0], "transaction_id": "neg", "amount": -1}).encode(),
              json.dumps({**docs[0], "transaction_id": "inf", "amount": 1e300}).encode(),
              b"{" + b" " * 100_000 + b"}"]
    try:
        consumer = scenario.consumer()
        scenario.placed |= produce(kafka_broker, scenario.topics.transactions,
                                   docs[:600] + poison + docs[600:])
        wait_until(lambda: scenario.decided() >= 300, timeout=90)
        consumer.signal(signal.SIGTERM)  # mid-stream: finish the batch, commit, exit 0
        assert consumer.wait() == 0
        scenario.consumer()
        wait_until(lambda: scenario.decided() >= len(docs), timeout=90)
    finally:
        scenario.stop_all()
    scenario.check(models, docs)
    dead = read_topic(kafka_broker, scenario.topics.dead_letter, len(poison))
    assert sorted(bytes(r.value) for r in dead) == sorted(poison)  # each once, bytes intact
    assert Counter(dict(r.headers)["dlq.reason"] for r in dead) == {
        b"invalid_json": 2, b"schema_violation": 2, b"absurd_value": 2, b"oversized": 1}


@pytest.mark.parametrize("pipelined", ["false", "true"])
def test_two_consumers_rebalance(kafka_broker, tmp_path, group_id_factory, models,
                                 predictor, pipelined: str) -> None:
    scenario = Scenario(kafka_broker, tmp_path, group_id_factory("rebalance"), predictor)
    scenario.env["FRAUDOPS_CONSUMER__PIPELINED"] = pipelined
    docs = transactions(3000, seed=14)
    try:
        first = scenario.consumer()
        scenario.produce_slowly(docs[:1000]).join(30)
        wait_until(lambda: scenario.decided() >= 500, timeout=90)
        scenario.consumer()  # joins: partitions move, state follows through the snapshots
        scenario.produce_slowly(docs[1000:2000]).join(30)
        wait_until(lambda: scenario.decided() >= 2000, timeout=90)
        first.signal(signal.SIGTERM)  # leaves: the second takes every partition over
        assert first.wait() == 0
        scenario.produce_slowly(docs[2000:]).join(30)
        wait_until(lambda: scenario.decided() >= len(docs), timeout=90)
    finally:
        scenario.stop_all()
    scenario.check(models, docs)
    logs = scenario.consumers[1].log()
    assert "restored snapshot" in logs or "no snapshot" in logs
