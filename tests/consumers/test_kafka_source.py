"""`KafkaSource` on the session's real broker: group membership across members leaving and
joining, and positions that come from the caller, never from Kafka."""

from __future__ import annotations

import threading
import time

import pytest
from consumer_helpers import make_topics, produce, tx_doc

from consumers.kafka_io import KafkaSource
from consumers.settings import ConsumerSection
from fraudops.settings import KafkaSettings

pytestmark = pytest.mark.integration


def _source(broker, topics, group_id: str, assigned: list, *, offsets=None) -> KafkaSource:
    def on_assigned(topic: str, partitions: list[int]) -> dict:
        assigned.append(partitions)
        return {p: (offsets or {}).get(p) for p in partitions}

    return KafkaSource(KafkaSettings(bootstrap_servers=broker.bootstrap), ConsumerSection(),
                       [topics.transactions], group_id=group_id, on_assigned=on_assigned,
                       on_revoked=lambda topic, partitions: None)


def _poll_until(source: KafkaSource, stop: threading.Event, done, timeout: float = 60) -> list:
    records, deadline = [], time.monotonic() + timeout
    while not done(records) and time.monotonic() < deadline:
        records += source.poll_batch(100, 0.05, stop)
    return records


def test_a_member_that_leaves_hands_its_partitions_to_the_one_that_stays(
        kafka_broker, group_id_factory):
    """The restart CI saw kafka-python fail (a new member idle for minutes): two members
    share the partitions; when one closes, the other owns all of them within a rebalance."""
    topics = make_topics(kafka_broker)
    group = group_id_factory("handover")
    first_assigned: list = []
    second_assigned: list = []
    first = _source(kafka_broker, topics, group, first_assigned)
    second = _source(kafka_broker, topics, group, second_assigned)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                first_assigned and second_assigned
                and sorted(first_assigned[-1] + second_assigned[-1]) == [0, 1, 2]
                and first_assigned[-1] and second_assigned[-1]):
            first.poll_batch(100, 0.05, stop)
            second.poll_batch(100, 0.05, stop)
        assert sorted(first_assigned[-1] + second_assigned[-1]) == [0, 1, 2]
        assert first_assigned[-1] and second_assigned[-1]  # both members hold partitions
        first.close()
        started = time.monotonic()
        while second_assigned[-1] != [0, 1, 2] and time.monotonic() - started < 30:
            second.poll_batch(100, 0.05, stop)
        assert second_assigned[-1] == [0, 1, 2]
        # the member that stays got them within a session timeout, not minutes
        assert time.monotonic() - started < 15
    finally:
        second.close()


def test_partitions_start_where_the_caller_says_and_again_when_given_back(
        kafka_broker, group_id_factory):
    """Positions are the caller's (the store's): a partition with a stored offset starts
    there; one with nothing stored starts at its first record, also when the group hands the
    same partitions back to the same member (CI lost a partition's first 19 records once,
    when kafka-python kept the fetch position of the revoked partition)."""
    topics = make_topics(kafka_broker)
    placed = produce(kafka_broker, topics.transactions, [tx_doc(i, f"acc-{i % 12}")
                                                         for i in range(60)])
    per_partition: dict[int, list[int]] = {}
    for partition, offset in placed.values():
        per_partition.setdefault(partition, []).append(offset)
    assert len(per_partition) == 3
    stored = {0: 3}  # partition 0 resumes after its first three records; the others: nothing
    assigned: list = []
    source = _source(kafka_broker, topics, group_id_factory("given-back"), assigned,
                     offsets=stored)
    expected = sorted((p, o) for p, o in placed.values() if o >= stored.get(p, 0))
    stop = threading.Event()
    try:
        first = _poll_until(source, stop, lambda got: len(got) >= len(expected))
        assert sorted((r.partition, r.offset) for r in first) == expected
        # What the group's callbacks do when it hands the same partitions back.
        assignment = source._consumer.assignment()
        source._on_revoke(source._consumer, assignment)
        source._on_assign(source._consumer, assignment)
        again = _poll_until(source, stop, lambda got: len(got) >= len(expected))
    finally:
        source.close()
    assert sorted((r.partition, r.offset) for r in again) == expected


def test_seek_rewinds_a_partition_and_drops_what_was_fetched_beyond(
        kafka_broker, group_id_factory):
    topics = make_topics(kafka_broker, partitions=1)
    produce(kafka_broker, topics.transactions, [tx_doc(i) for i in range(40)])
    source = _source(kafka_broker, topics, group_id_factory("seek"), [])
    stop = threading.Event()
    try:
        first = _poll_until(source, stop, lambda got: len(got) >= 40)
        assert [r.offset for r in first] == list(range(40))
        source.seek(topics.transactions, 0, 25)
        again = _poll_until(source, stop, lambda got: len(got) >= 15)
        time.sleep(0.3)
        again += source.poll_batch(100, 0.05, stop)
    finally:
        source.close()
    assert [r.offset for r in again] == list(range(25, 40))
    assert all(r.timestamp_ms > 0 and r.key == b"acc-1" for r in again)


def test_lag_and_commit_report_the_partitions_positions(kafka_broker, group_id_factory):
    topics = make_topics(kafka_broker, partitions=1)
    produce(kafka_broker, topics.transactions, [tx_doc(i) for i in range(30)])
    source = _source(kafka_broker, topics, group_id_factory("lag"), [], offsets={0: 0})
    stop = threading.Event()
    try:
        got = []
        while len(got) < 10:
            got += source.poll_batch(10 - len(got), 0.05, stop)
        source.pause_all()
        lag = source.lag()
        assert set(lag) == {(topics.transactions, 0)}
        assert 0 <= lag[(topics.transactions, 0)] <= 20
        assert source.commit({(topics.transactions, 0): 10}, wait=True)
        source.resume_all()
        rest = _poll_until(source, stop, lambda r: len(got) + len(r) >= 30)
        assert [r.offset for r in got + rest] == list(range(30))
    finally:
        source.close()


def test_paused_it_takes_nothing_in_and_on_resume_hands_over_every_record_once(
        kafka_broker, group_id_factory):
    """Flow control: while paused, `poll_batch` returns nothing but keeps the membership and
    what arrived; resumed, every record comes exactly once, in order, whether it was held or
    fetched again after librdkafka's own pause (past one poll's worth)."""
    topics = make_topics(kafka_broker, partitions=1)
    section = ConsumerSection(max_poll_records=5)
    assigned: list = []
    source = KafkaSource(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), section,
                         [topics.transactions], group_id=group_id_factory("pause"),
                         on_assigned=lambda t, ps: assigned.append(ps) or {p: None for p in ps},
                         on_revoked=lambda t, ps: None)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            source.poll_batch(10, 0.0, stop)
        source.pause_all()
        produce(kafka_broker, topics.transactions, [tx_doc(i) for i in range(30)])
        for _ in range(40):  # more polls than records: held up to 5, then fetching paused
            assert source.poll_batch(10, 0.0, stop, idle_s=0.05) == []
        assert 0 < len(source._held) <= 5 + 1
        source.resume_all()
        got = _poll_until(source, stop, lambda r: len(r) >= 30)
        time.sleep(0.3)
        got += source.poll_batch(100, 0.05, stop)
    finally:
        source.close()
    assert [r.offset for r in got] == list(range(30))
