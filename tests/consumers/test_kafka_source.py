"""`KafkaSource` on the session's real broker: a member left without partitions joins again."""

from __future__ import annotations

import threading
import time

import pytest
from consumer_helpers import make_topics, produce, tx_doc

from consumers.kafka_io import KafkaSource
from consumers.settings import ConsumerSection
from fraudops.settings import KafkaSettings

pytestmark = pytest.mark.integration


def test_a_member_without_partitions_too_long_joins_again(kafka_broker, group_id_factory):
    topics = make_topics(kafka_broker)
    assigned: list[list[int]] = []
    source = KafkaSource(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), ConsumerSection(),
        [topics.transactions], group_id=group_id_factory("rejoin"),
        on_assigned=lambda topic, partitions: assigned.append(partitions) or {},
        on_revoked=lambda topic, partitions: None)
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 60
        while not assigned and time.monotonic() < deadline:
            source.poll_batch(100, 0.05, stop)
        assert assigned == [[0, 1, 2]]
        first, generation = source._consumer, source.generation
        # What a stuck rejoin looks like from inside: revoked, then no assignment for too long.
        source._revoked([])
        source._unassigned_since = time.monotonic() - source.rejoin_after_s - 1
        source.poll_batch(100, 0.05, stop)
        assert source._consumer is not first and source.generation > generation
        deadline = time.monotonic() + 60
        while len(assigned) < 2 and time.monotonic() < deadline:
            source.poll_batch(100, 0.05, stop)
        assert assigned[-1] == [0, 1, 2]  # the new member got the partitions back
        assert source._unassigned_since is None
    finally:
        source.close()


def _poll_until(source: KafkaSource, stop: threading.Event, done, timeout: float = 60) -> list:
    records, deadline = [], time.monotonic() + timeout
    while not done(records) and time.monotonic() < deadline:
        records += source.poll_batch(100, 0.05, stop)
    return records


def test_a_partition_given_back_without_a_stored_position_starts_at_its_first_record(
        kafka_broker, group_id_factory):
    """Eager rebalancing revokes every partition and may give the same ones back to the same
    member, and kafka-python then keeps their fetch positions. The consumer dropped what it had
    fetched when they were revoked, so a partition with nothing stored must start again at its
    first record, not where the fetching stopped (CI lost a partition's first 19 records)."""
    topics = make_topics(kafka_broker)
    placed = produce(kafka_broker, topics.transactions, [tx_doc(i, f"acc-{i % 5}")
                                                         for i in range(60)])
    source = KafkaSource(
        KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), ConsumerSection(),
        [topics.transactions], group_id=group_id_factory("given-back"),
        on_assigned=lambda topic, partitions: {p: None for p in partitions},  # nothing stored
        on_revoked=lambda topic, partitions: None)
    stop = threading.Event()
    try:
        first = _poll_until(source, stop, lambda got: len(got) >= len(placed))
        assert len(first) == len(placed)
        assignment = sorted(source._consumer.assignment())
        # What the listener sees when the group hands the same partitions back.
        source._revoked(assignment)
        source._assigned(assignment)
        again = _poll_until(source, stop, lambda got: len(got) >= len(placed))
    finally:
        source.close()
    assert sorted((r.partition, r.offset) for r in again) == sorted(placed.values())
