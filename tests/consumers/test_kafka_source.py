"""`KafkaSource` on the session's real broker: a member left without partitions joins again."""

from __future__ import annotations

import threading
import time

import pytest
from consumer_helpers import make_topics

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
