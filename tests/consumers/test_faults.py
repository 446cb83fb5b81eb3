"""Fault tests on the real broker (Apache Kafka unless FRAUDOPS_TEST_KAFKA=tansu): the broker
restarted mid-stream, the consumer killed three times during a 100,000-transaction stream,
consumers joining and leaving, the predictor down for 30 seconds.

Every test ends with the same checks (`Outcome.check`): each produced transaction has exactly one
stored decision, equal to an independent reference computation (so no state was lost or applied
twice); the stored alerts are exactly the non-approved decisions, each once; no email was sent
twice or is missing; and `fraud-decisions` holds every transaction, where a record appears twice
(a batch re-published after a crash, before its write committed) with the same decision.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from consumer_helpers import decision_id, make_topics, produce, read_topic
from e2e_helpers import (
    Inbox,
    Models,
    Service,
    consumer_env,
    predictor_service,
    reference_scores,
    transactions,
    write_models,
)

from fraudops.store import Store
from fraudops.testing import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    return write_models(tmp_path_factory.mktemp("models"), transactions(2000))


@pytest.fixture
def inbox() -> Iterator[tuple[int, Inbox]]:
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler
    controller.stop()


class Predictor:
    """A predictor of the test's own, on a fixed port, that can go down and come back."""

    def __init__(self, models: Models, tmp_path) -> None:
        self.models, self.tmp_path = models, tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None
        self.starts = 0

    def start(self) -> Predictor:
        self.starts += 1
        self.service = predictor_service(self.models, self.port, self.tmp_path / "predictor-home",
                                         self.tmp_path / f"predictor-{self.starts}.log").start()
        self.service.wait_http(f"{self.url}/v2/models/fraud-scorer/ready", timeout=120)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture(scope="module")
def predictor(models: Models, tmp_path_factory) -> Iterator[Predictor]:
    """One predictor for the module (it takes seconds to start); the outage test stops it and
    starts it again on the same port."""
    predictor = Predictor(models, tmp_path_factory.mktemp("predictor")).start()
    yield predictor
    predictor.stop()


class Outcome:
    """Topics, store, consumers and producer of one fault test."""

    def __init__(self, broker, tmp_path, group_id: str, predictor_url: str,
                 smtp_port: int | None = None, notify: tuple[str, ...] = ("block", "review"),
                 **env: str) -> None:
        self.notify = notify
        self.broker, self.tmp_path = broker, tmp_path
        self.topics = make_topics(broker)
        self.db_url = f"sqlite:///{tmp_path / 'store.db'}"
        self.store = Store.from_url(self.db_url)
        if smtp_port is not None:
            env |= {"FRAUDOPS_NOTIFY__SMTP_HOST": "127.0.0.1",
                    "FRAUDOPS_NOTIFY__SMTP_PORT": str(smtp_port),
                    "FRAUDOPS_NOTIFY__EMAIL_TO": '["fraud-ops@bank.test"]',
                    "FRAUDOPS_NOTIFY__RATE_LIMIT_COUNT": "1000000",
                    "FRAUDOPS_NOTIFY__DECISIONS": json.dumps(list(notify))}
        self.env = consumer_env(broker.bootstrap, self.topics, self.db_url, group_id,
                                predictor_url, **env)
        self.placed: dict[str, tuple[int, int]] = {}
        self.consumers: list[Service] = []

    def consumer(self) -> Service:
        name = f"consumer-{len(self.consumers)}"
        service = Service(["consume"], self.env, self.tmp_path / f"{name}.log").start()
        self.consumers.append(service)
        return service

    def produce(self, docs: list[dict]) -> None:
        self.placed |= produce(self.broker, self.topics.transactions, docs)

    def decided(self) -> int:
        return self.store.counts()["decisions"]

    def wait_decided(self, count: int, timeout: float = 120.0) -> None:
        try:
            wait_until(lambda: self.decided() >= count, timeout=timeout, interval=0.25)
        except TimeoutError:
            logs = "\n".join(f"--- {c.log_path.name}\n{c.log()[-2500:]}" for c in self.consumers)
            raise AssertionError(f"{self.decided()} of {count} decided after {timeout} s\n"
                                 f"{logs}") from None

    def finish(self, count: int, mailbox: Inbox, timeout: float = 180.0) -> None:
        """Wait until `count` transactions are decided and every alert's email is out."""
        self.wait_decided(count, timeout)
        # The outbox drains at the SMTP round trip's pace (one durable mark per email), slower
        # on a busy machine: wait while emails keep arriving, fail when none came for a minute.
        stalled_s, last, quiet_since = 60.0, -1, time.monotonic()
        while (arrived := len(set(mailbox.message_ids))) < self.store.counts()["notifications"]:
            if arrived != last:
                last, quiet_since = arrived, time.monotonic()
            elif time.monotonic() - quiet_since > stalled_s:
                by_status = Counter(n.status for n in self.store.notifications())
                logs = "\n".join(f"--- {c.log_path.name}\n{c.log()[-2500:]}"
                                 for c in self.consumers)
                raise AssertionError(f"{arrived} emails arrived, none for {stalled_s:.0f} s; "
                                     f"outbox: {dict(by_status)}\n{logs}")
            time.sleep(0.25)
        time.sleep(1.5)  # a duplicate email would arrive now

    def stop_all(self) -> None:
        for service in self.consumers:
            service.stop()

    def check(self, models: Models, docs: list[dict], mailbox: Inbox | None = None,
              kills: int = 0) -> dict[str, int]:
        """The invariants of every fault test; returns counts worth reporting.

        Email is at-least-once with the alert's Message-ID as idempotency key: every alert's
        email arrives, and a consumer killed between the server's acknowledgement and the
        outbox's mark repeats that one email (same Message-ID), so at most one per kill.
        """
        expected = reference_scores(models, self.placed, docs)
        stored = {d.transaction_id: d for d in self.store.scored_window()}
        assert self.decided() == len(docs), "a transaction was decided twice (or not at all)"
        assert set(stored) == set(expected)
        mismatched = [tx for tx, (p, decision) in expected.items()
                      if abs(stored[tx].fraud_probability - p) > 1e-4
                      or stored[tx].decision != decision]
        assert mismatched == [], f"{len(mismatched)} decisions differ, e.g. {mismatched[:5]}"
        alerts = sorted(tx for tx, (_, decision) in expected.items() if decision != "approve")
        stored_alerts = [a.transaction_id for a in self.store.list_alerts(limit=10_000_000)]
        assert sorted(stored_alerts) == alerts  # each once
        if mailbox is not None:
            notified = [tx for tx, (_, decision) in expected.items() if decision in self.notify]
            assert sorted(set(mailbox.message_ids)) == sorted(f"<email.{tx}@fraudops>"
                                                              for tx in notified)
            repeated = len(mailbox.message_ids) - len(set(mailbox.message_ids))
            assert repeated <= kills, f"{repeated} emails repeated after {kills} kills"
            assert {n.status for n in self.store.notifications()} == {"sent"}
        published: dict[str, set[tuple]] = defaultdict(set)
        records = read_topic(self.broker, self.topics.decisions, len(docs), timeout=120,
                             distinct=decision_id)
        for record in records:
            value = json.loads(record.value)
            published[value["transaction_id"]].add(
                (value["decision"], value["fraud_probability"], value["anomaly_score"]))
        assert set(published) == set(expected)
        conflicting = [tx for tx, versions in published.items() if len(versions) > 1]
        assert conflicting == [], (
            f"{len(conflicting)} ids with two different decisions published, e.g. "
            + "; ".join(f"{tx}: {sorted(published[tx])} (reference {expected[tx]}, stored "
                        f"{stored[tx].decision} {stored[tx].fraud_probability:.6f})"
                        for tx in conflicting[:3]))
        counts = {"decisions": len(stored), "alerts": len(alerts),
                  "republished": len(records) - len(published)}
        if mailbox is not None:
            counts["emails_repeated"] = len(mailbox.message_ids) - len(set(mailbox.message_ids))
        return counts


def test_consumer_killed_three_times_in_100k_stream(kafka_broker, tmp_path, group_id_factory,
                                                    models, predictor, inbox) -> None:
    smtp_port, mailbox = inbox
    outcome = Outcome(kafka_broker, tmp_path, group_id_factory("kill3"), predictor.url,
                      smtp_port, notify=("block",), FRAUDOPS_CONSUMER__BATCH_SIZE="500",
                      FRAUDOPS_CONSUMER__SNAPSHOT_INTERVAL_S="1")
    docs = transactions(100_000, accounts=5_000, seed=21)
    killed_at = []
    try:
        outcome.produce(docs)
        consumer = outcome.consumer()
        started = time.monotonic()
        for target in (20_000, 45_000, 70_000):
            outcome.wait_decided(target, timeout=180)
            consumer.signal(signal.SIGKILL)
            assert consumer.wait() == -signal.SIGKILL
            killed_at.append(outcome.decided())
            consumer = outcome.consumer()
        outcome.wait_decided(len(docs), timeout=300)
        elapsed = time.monotonic() - started
        outcome.finish(len(docs), mailbox)
    finally:
        outcome.stop_all()
    assert all(n < len(docs) for n in killed_at)
    counts = outcome.check(models, docs, mailbox, kills=len(killed_at))
    print(f"killed at {killed_at} decided; all decided in {elapsed:.0f} s; {counts}")


def test_broker_restarted_mid_stream(broker_factory, tmp_path, group_id_factory, models,
                                     predictor, inbox) -> None:
    """The broker is killed (SIGKILL) and restarted on its kept log directory while the
    consumer runs: it waits, reconnects, and goes on where the committed offsets say."""
    smtp_port, mailbox = inbox
    broker = broker_factory()
    if broker.flavour == "tansu":
        pytest.skip("tansu's memory engine loses every topic when it stops")
    outcome = Outcome(broker, tmp_path, group_id_factory("brk"), predictor.url, smtp_port)
    docs = transactions(6000, accounts=300, seed=22)
    try:
        outcome.consumer()
        outcome.produce(docs[:3000])
        outcome.wait_decided(1000)
        broker.kill()
        stopped_at = outcome.decided()
        time.sleep(3.0)  # the consumer meets a dead broker: retries, no crash
        broker.start()
        outcome.produce(docs[3000:])
        outcome.finish(len(docs), mailbox)
        assert outcome.consumers[0].process.poll() is None, "the consumer died with the broker"
    finally:
        outcome.stop_all()
    assert stopped_at < len(docs)
    print(f"broker killed at {stopped_at} decided; {outcome.check(models, docs, mailbox)}")


def test_consumers_join_and_leave(kafka_broker, tmp_path, group_id_factory, models,
                                  predictor, inbox) -> None:
    """One consumer, then two, then three (the group rebalances each time), then two leave
    (one cleanly, one killed) and the last one finishes the stream."""
    smtp_port, mailbox = inbox
    outcome = Outcome(kafka_broker, tmp_path, group_id_factory("join"), predictor.url, smtp_port)
    docs = transactions(12_000, accounts=600, seed=23)
    steps = [2000, 4000, 6000, 8000, 10_000]
    try:
        outcome.consumer()
        outcome.produce(docs[:steps[0]])
        outcome.wait_decided(steps[0] // 2)
        outcome.consumer()  # two members
        outcome.produce(docs[steps[0]:steps[1]])
        outcome.wait_decided(steps[1] - 500)
        outcome.consumer()  # three members
        outcome.produce(docs[steps[1]:steps[2]])
        outcome.wait_decided(steps[2] - 500)
        outcome.consumers[0].signal(signal.SIGTERM)  # leaves cleanly
        assert outcome.consumers[0].wait() == 0
        outcome.produce(docs[steps[2]:steps[3]])
        outcome.wait_decided(steps[3] - 500)
        outcome.consumers[1].signal(signal.SIGKILL)  # leaves by crashing
        outcome.consumers[1].wait()
        outcome.produce(docs[steps[3]:])
        outcome.finish(len(docs), mailbox)
    finally:
        outcome.stop_all()
    print(outcome.check(models, docs, mailbox, kills=1))


def test_predictor_down_for_30_seconds(kafka_broker, tmp_path, group_id_factory, models,
                                       predictor, inbox) -> None:
    """The predictor process is stopped for 30 s and started again: nothing is decided without
    it, nothing is skipped, and the consumer needs no restart."""
    smtp_port, mailbox = inbox
    outcome = Outcome(kafka_broker, tmp_path, group_id_factory("pred"), predictor.url, smtp_port,
                      FRAUDOPS_CONSUMER__PREDICTOR_TIMEOUT_S="1")
    docs = transactions(6000, accounts=300, seed=24)
    try:
        consumer = outcome.consumer()
        outcome.produce(docs[:3000])
        outcome.wait_decided(3000)
        predictor.stop()
        down_at = time.monotonic()
        outcome.produce(docs[3000:])
        time.sleep(30.0)
        stalled = outcome.decided()
        predictor.start()
        outcome.finish(len(docs), mailbox)
        assert consumer.process.poll() is None
    finally:
        outcome.stop_all()
    assert stalled == 3000, "something was decided (or skipped) without the predictor"
    assert time.monotonic() - down_at >= 30
    print(outcome.check(models, docs, mailbox))
