"""Thin wrappers over kafka-python: micro-batch polling, rebalance hooks, producing, commits.

Everything Kafka-specific lives here so that `consumers.processor` stays broker-free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from consumers.exceptions import ConsumerError
from consumers.messages import Incoming, Outgoing
from consumers.settings import ConsumerSection
from fraudops.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Called with the partitions of a topic; `on_assigned` returns {partition: offset to seek}.
AssignHook = Callable[[str, list[int]], dict[int, int | None]]
RevokeHook = Callable[[str, list[int]], None]
#: The least time a member waits without partitions before it joins again as a new member.
REJOIN_AFTER_MIN_S = 20.0
REJOIN_AFTER_MAX_S = 600.0


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.source._revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.source._assigned(list(assigned))


class KafkaSource:
    """A consumer-group member that hands out micro-batches of `Incoming` records."""

    def __init__(self, kafka: KafkaSettings, section: ConsumerSection, topics: Sequence[str], *,
                 on_assigned: AssignHook, on_revoked: RevokeHook,
                 group_id: str | None = None) -> None:
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        #: Bumped on every rebalance: records fetched before one are dropped, not processed.
        self.generation = 0
        self._topics = list(topics)
        self._options = dict(
            **kafka.client_options(), group_id=group_id or section.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            max_poll_interval_ms=section.max_poll_interval_ms,
            max_poll_records=section.max_poll_records,
            max_partition_fetch_bytes=section.max_partition_fetch_bytes,
            fetch_max_wait_ms=section.fetch_max_wait_ms,
        )
        #: Without partitions for this long (never assigned, or revoked and not given new ones),
        #: the member leaves and joins again with a new consumer (see `_unassigned_too_long`).
        self.rejoin_after_s = max(REJOIN_AFTER_MIN_S, 3 * kafka.session_timeout_ms / 1000)
        self._rejoin_wait_s = self.rejoin_after_s
        self._unassigned_since: float | None = time.monotonic()
        self._consumer = self._join()

    def _join(self) -> KafkaConsumer:
        consumer = KafkaConsumer(**self._options)
        # Metadata first: a member that leads the group's first join before it knows the
        # topics' partitions assigns nothing ("No partition metadata"), and kafka-python then
        # relies on a later metadata change to rejoin.
        for topic in self._topics:
            consumer.partitions_for_topic(topic)
        consumer.subscribe(topics=self._topics, listener=_Listener(self))
        return consumer

    def _unassigned_too_long(self) -> bool:
        """A member left without partitions beyond `rejoin_after_s`: kafka-python 3.0.12 with
        Apache Kafka 4.1 sometimes never completes a rejoin after a rebalance (seen in CI: a
        restarted consumer revoked 80 ms after its first assignment, then idle for 80 s and
        300 s while still polling). A new member (the old one closed, leaving the group) is
        assigned within a join; the store, not Kafka, holds the positions, so nothing is lost
        or repeated. A member of a group with more members than partitions is legitimately
        idle: the wait doubles after each rejoin (up to `REJOIN_AFTER_MAX_S`) until one brings
        partitions, so such a group rebalances rarely."""
        return (self._unassigned_since is not None
                and time.monotonic() - self._unassigned_since > self._rejoin_wait_s)

    def _rejoin(self) -> None:
        log.warning("no partitions for %.0f s after a rebalance: leaving the group and joining "
                    "again", time.monotonic() - self._unassigned_since)
        try:
            self._consumer.close()
        except KafkaError as error:
            log.warning("closing the stuck consumer failed: %s", error)
        self.generation += 1
        self._unassigned_since = time.monotonic()
        self._rejoin_wait_s = min(2 * self._rejoin_wait_s, REJOIN_AFTER_MAX_S)
        self._consumer = self._join()

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        self.generation += 1
        if assigned:
            self._unassigned_since, self._rejoin_wait_s = None, self.rejoin_after_s
        else:
            log.info("assigned no partitions")
            self._unassigned_since = self._unassigned_since or time.monotonic()
        for topic in sorted({tp.topic for tp in assigned}):
            partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
            log.info("assigned %s %s", topic, partitions)
            for partition, offset in self.on_assigned(topic, partitions).items():
                self._start(TopicPartition(topic, partition), offset)

    def _start(self, tp: TopicPartition, offset: int | None) -> None:
        """Seek an assigned partition to `offset`; None (nothing stored for it) means its first
        record, explicitly: kafka-python keeps the fetch position of a partition assigned again
        to the same member (eager rebalancing revokes everything first), and the records fetched
        there before the revocation were dropped with the batch in progress, so carrying on
        from that position lost them (CI: a partition revoked 80 ms after its first assignment
        and given back never decided its first 19 records)."""
        if offset is None:
            self._consumer.seek_to_beginning(tp)
        else:
            self._consumer.seek(tp, offset)

    def _revoked(self, revoked: list[TopicPartition]) -> None:
        self.generation += 1
        self._unassigned_since = time.monotonic()
        for topic in sorted({tp.topic for tp in revoked}):
            partitions = sorted(tp.partition for tp in revoked if tp.topic == topic)
            log.info("revoked %s %s", topic, partitions)
            self.on_revoked(topic, partitions)

    def poll_batch(self, max_records: int, max_wait_s: float, stop: threading.Event,
                   idle_s: float = 0.1) -> list[Incoming]:
        """Up to `max_records` records, waiting at most `max_wait_s` after the first one.

        Returns an empty list after `idle_s` without records (so the caller can look at
        `stop`). Records fetched before a rebalance are discarded: the new assignment re-seeks
        every partition.
        """
        if self._unassigned_too_long():
            self._rejoin()
        out: list[Incoming] = []
        generation = self.generation
        deadline = None
        while len(out) < max_records and not stop.is_set():
            wait_ms = max(1, int(idle_s * 1000)) if deadline is None else \
                max(0, int((deadline - time.monotonic()) * 1000))
            fetched = self._consumer.poll(timeout_ms=wait_ms, max_records=max_records - len(out))
            if self.generation != generation:
                out, generation, deadline = [], self.generation, None
            for records in fetched.values():
                out.extend(Incoming(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                           for r in records)
            if not out:
                return out
            deadline = deadline or time.monotonic() + max_wait_s
            if time.monotonic() >= deadline:
                break
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def pause_all(self) -> None:
        """Stop fetching (the group membership stays: keep calling `poll_batch`)."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def commit(self, offsets: dict[tuple[str, int], int], *, wait: bool = False) -> bool:
        """Commit positions to Kafka (informational: the store holds the real positions).

        Asynchronous unless `wait`: the loop does not pay a broker round trip per batch.
        """
        if not offsets:
            return True
        request = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                   for (t, p), o in offsets.items()}
        try:
            if wait:
                self._consumer.commit(request)
            else:
                self._consumer.commit_async(request, callback=_log_commit_failure)
        except KafkaError as error:  # e.g. a rebalance in progress; the store is authoritative
            log.warning("Kafka offset commit failed: %s", error)
            return False
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        """Approximate lag per assigned partition (cached high watermark minus position)."""
        lags = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - self._consumer.position(tp))
        return lags

    def close(self) -> None:
        self._consumer.close()


def _log_commit_failure(offsets: object, response: object) -> None:
    if isinstance(response, Exception):
        log.warning("Kafka offset commit failed: %s", response)


class PendingSends:
    """Records handed to the producer; `wait` returns once the broker acknowledged all."""

    def __init__(self, producer: KafkaProducer | None, futures: list, timeout_s: float) -> None:
        self._producer = producer
        self._futures = futures
        self._timeout_s = timeout_s

    def wait(self) -> None:
        """Block until every record is acknowledged; raises `ConsumerError` if any failed."""
        if not self._futures:
            return
        self._producer.flush(timeout=self._timeout_s)
        failed = [f for f in self._futures if not f.succeeded()]
        if failed:
            error = failed[0].exception if failed[0].is_done else "not acknowledged in time"
            raise ConsumerError(f"{len(failed)} of {len(self._futures)} records not produced: "
                                f"{error}")


class KafkaSink:
    """Produces outgoing records (acks=all); `send` returns at once, `PendingSends.wait` blocks."""

    def __init__(self, kafka: KafkaSettings, linger_ms: int = 0, timeout_s: float = 30.0) -> None:
        self._producer = KafkaProducer(**kafka.client_options(), acks="all", linger_ms=linger_ms,
                                       batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
        self._timeout_s = timeout_s

    def send(self, messages: Sequence[Outgoing]) -> PendingSends:
        """Hand `messages` to the producer's I/O thread; wait for the acks with the result."""
        futures = [self._producer.send(m.topic, key=m.key, value=m.value,
                                       headers=list(m.headers) or None) for m in messages]
        return PendingSends(self._producer, futures, self._timeout_s)

    def close(self) -> None:
        self._producer.close()
