"""Thin wrappers over confluent-kafka (librdkafka): micro-batch polling, rebalance hooks,
producing, commits.

Everything Kafka-specific lives here so that `consumers.processor` stays broker-free. librdkafka
and not kafka-python (the platform's client until December 2026): its group membership
completed every rebalance where kafka-python 3.0.12 against Apache Kafka 4.1 sometimes left a
restarted member without partitions for minutes (CI, twice), and it fetches, decompresses and
produces in C.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from consumers.exceptions import ConsumerError
from consumers.messages import Incoming, Outgoing
from consumers.settings import ConsumerSection
from fraudops.kafka import CLIENT_LOG, log_client_error, make_producer
from fraudops.settings import KafkaSettings

log = logging.getLogger(__name__)

#: Called with the partitions of a topic; `on_assigned` returns {partition: offset to seek}.
AssignHook = Callable[[str, list[int]], dict[int, int | None]]
RevokeHook = Callable[[str, list[int]], None]


class KafkaSource:
    """A consumer-group member that hands out micro-batches of `Incoming` records.

    Positions come from the caller (`on_assigned`: the store holds them, not Kafka); the
    offsets committed to Kafka are informational (lag tools, a reset by hand).
    """

    def __init__(self, kafka: KafkaSettings, section: ConsumerSection, topics: Sequence[str], *,
                 on_assigned: AssignHook, on_revoked: RevokeHook,
                 group_id: str | None = None) -> None:
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        #: Bumped on every rebalance: records fetched before one are dropped, not processed.
        self.generation = 0
        self._max_records = section.max_poll_records
        #: Where each assigned partition started (what a re-assignment falls back to).
        self._starts: dict[tuple[str, int], int] = {}
        #: Flow control (`pause_all`): records taken in while paused, handed out on resume.
        self._paused = False
        self._fetch_paused = False
        self._held: list[Incoming] = []
        self._consumer = Consumer({
            **kafka.librdkafka_config(),
            "group.id": group_id or section.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka.session_timeout_ms,
            "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
            "max.poll.interval.ms": section.max_poll_interval_ms,
            "max.partition.fetch.bytes": section.max_partition_fetch_bytes,
            "fetch.wait.max.ms": section.fetch_max_wait_ms,
            "on_commit": _log_commit_failure,
            "error_cb": log_client_error,
            "logger": CLIENT_LOG,
        })
        self._consumer.subscribe(list(topics), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)

    # librdkafka calls these from inside `consume`, on the polling thread.
    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        self.generation += 1
        self._held.clear()
        self._fetch_paused = False
        if not assigned:
            log.info("assigned no partitions")
        starts: list[TopicPartition] = []
        for topic in sorted({tp.topic for tp in assigned}):
            partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
            log.info("assigned %s %s", topic, partitions)
            offsets = self.on_assigned(topic, partitions)
            for partition in partitions:
                starts.append(self._start_at(topic, partition, offsets.get(partition)))
        consumer.assign(starts)

    def _start_at(self, topic: str, partition: int, offset: int | None) -> TopicPartition:
        """None (nothing stored for the partition) means its first record, explicitly: not
        Kafka's committed offset, which is informational only."""
        start = OFFSET_BEGINNING if offset is None else offset
        self._starts[(topic, partition)] = start
        return TopicPartition(topic, partition, start)

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self.generation += 1
        self._held.clear()
        for topic in sorted({tp.topic for tp in revoked}):
            partitions = sorted(tp.partition for tp in revoked if tp.topic == topic)
            log.info("revoked %s %s", topic, partitions)
            self.on_revoked(topic, partitions)
            for partition in partitions:
                self._starts.pop((topic, partition), None)
        consumer.unassign()

    def poll_batch(self, max_records: int, max_wait_s: float, stop: threading.Event,
                   idle_s: float = 0.1) -> list[Incoming]:
        """Up to `max_records` records, waiting at most `max_wait_s` after the first one.

        Returns an empty list after `idle_s` without records (so the caller can look at
        `stop`). Records fetched before a rebalance are discarded: the new assignment starts
        every partition where the caller said.
        """
        if self._paused:
            self._hold(idle_s)
            return []
        out, self._held = self._held[:max_records], self._held[max_records:]
        consume = self._consumer.consume
        generation = self.generation
        deadline = None if not out else time.monotonic() + max_wait_s
        while len(out) < max_records and not stop.is_set():
            # librdkafka's consume(n, timeout) waits until it has n records or the timeout
            # passed: wait for the first record only, then take what is already fetched.
            if deadline is None:
                fetched = consume(1, idle_s)
                if fetched and max_records > 1:
                    before = self.generation
                    more = consume(min(max_records, self._max_records) - 1, 0)
                    # a rebalance in between: the first record predates it
                    fetched = more if self.generation != before else fetched + more
            else:
                fetched = consume(min(max_records - len(out), self._max_records),
                                  max(0.0, deadline - time.monotonic()))
            if self.generation != generation:
                out, generation, deadline = [], self.generation, None
                fetched = [m for m in fetched if (m.topic(), m.partition()) in self._starts]
            out.extend(_incoming(fetched))
            if not out:
                return out
            deadline = deadline or time.monotonic() + max_wait_s
            if time.monotonic() >= deadline:
                break
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Fetch `partition` from `offset` next (what was fetched beyond it is dropped)."""
        self._held = [r for r in self._held if (r.topic, r.partition) != (topic, partition)]
        tp = TopicPartition(topic, partition, offset)
        try:
            self._consumer.seek(tp)
        except KafkaException as error:
            if error.args[0].code() != KafkaError._STATE:
                raise
            # Assigned this very poll and not fetching yet: assign again, this one from
            # `offset`, every other one where it is (or where it was to start).
            self._starts[(topic, partition)] = offset
            self._consumer.assign([
                TopicPartition(p.topic, p.partition, p.offset if p.offset >= 0
                               else self._starts.get((p.topic, p.partition), OFFSET_BEGINNING))
                for p in self._consumer.position(self._consumer.assignment())
                if (p.topic, p.partition) != (topic, partition)] + [tp])
        self._starts[(topic, partition)] = offset

    def _hold(self, wait_s: float) -> None:
        """While paused: serve the group (rebalance callbacks run inside `consume`) and keep
        what arrives for `resume_all`, up to one poll's worth; then pause the fetching itself.
        Pausing at once would cost a fetch round trip per batch: librdkafka drops what it
        prefetched for a paused partition and fetches it again on resume."""
        if len(self._held) >= self._max_records and not self._fetch_paused:
            self._consumer.pause(self._consumer.assignment())
            self._fetch_paused = True
        generation = self.generation
        fetched = self._consumer.consume(1, wait_s)
        if self.generation == generation:
            self._held.extend(_incoming(fetched))

    def pause_all(self) -> None:
        """Take no more records in until `resume_all` (the group membership stays: keep
        calling `poll_batch`, which returns nothing meanwhile)."""
        self._paused = True

    def resume_all(self) -> None:
        self._paused = False
        if self._fetch_paused:
            self._consumer.resume(self._consumer.assignment())
            self._fetch_paused = False

    def commit(self, offsets: dict[tuple[str, int], int], *, wait: bool = False) -> bool:
        """Commit positions to Kafka (informational: the store holds the real positions).

        Asynchronous unless `wait`: the loop does not pay a broker round trip per batch.
        """
        if not offsets:
            return True
        request = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            result = self._consumer.commit(offsets=request, asynchronous=not wait)
        except KafkaException as error:  # e.g. a rebalance in progress; the store is authoritative
            log.warning("Kafka offset commit failed: %s", error)
            return False
        failed = [tp for tp in result or () if tp.error is not None]
        if failed:
            log.warning("Kafka offset commit failed for %s: %s", failed[0], failed[0].error)
        return not failed

    def lag(self) -> dict[tuple[str, int], int]:
        """Approximate lag per assigned partition (the high watermark of the last fetch
        minus the position)."""
        lags = {}
        assignment = self._consumer.assignment()
        if not assignment:
            return lags
        for tp in self._consumer.position(assignment):
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                lags[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return lags

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once)."""
        self._consumer.close()


def _incoming(fetched: list) -> list[Incoming]:
    out = []
    for m in fetched:
        if m.error() is not None:
            _raise_if_fatal(m.error())
            continue
        _, timestamp = m.timestamp()
        headers = m.headers()
        out.append(Incoming(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                            timestamp, tuple(headers) if headers else ()))
    return out


def _log_commit_failure(error: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if error is not None:
        log.warning("Kafka offset commit failed: %s", error)


def _raise_if_fatal(error: KafkaError) -> None:
    if error.fatal():
        raise ConsumerError(f"Kafka consumer failed: {error}")
    log.warning("Kafka consumer: %s", error)


class PendingSends:
    """Records handed to the producer; `wait` returns once the broker acknowledged all."""

    __slots__ = ("_producer", "_timeout_s", "acknowledged", "errors", "sent")

    def __init__(self, producer: Producer | None, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self.sent = 0
        self.acknowledged = 0
        self.errors: list[KafkaError] = []

    def _delivered(self, error: KafkaError | None, message: object) -> None:
        if error is None:
            self.acknowledged += 1
        else:
            self.errors.append(error)

    def wait(self) -> None:
        """Block until every record is acknowledged; raises `ConsumerError` if any failed.

        flush, not poll: librdkafka ignores linger.ms during a flush, so what still lingers
        leaves now (the sink lingers to send a batch's records in few requests, not to delay
        them). A flush returns once the producer's whole queue is empty, and another thread
        may be producing the next batches meanwhile (`consumers.pipeline`, behind a snapshot):
        so it is called in short steps, this batch's acks checked between them."""
        if not self.sent:
            return
        deadline = time.monotonic() + self._timeout_s
        flush = self._producer.flush
        while self.acknowledged + len(self.errors) < self.sent:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            flush(min(left, 0.01))
        missing = self.sent - self.acknowledged
        if missing:
            error = self.errors[0] if self.errors else "not acknowledged in time"
            raise ConsumerError(f"{missing} of {self.sent} records not produced: {error}")


class KafkaSink:
    """Produces outgoing records (acks=all); `send` returns at once, `PendingSends.wait` blocks.

    Keyed records go where Kafka's default (Java) partitioner puts them (murmur2 of the key),
    as every other producer of the platform places them.
    """

    def __init__(self, kafka: KafkaSettings, linger_ms: int = 0, timeout_s: float = 30.0) -> None:
        self._producer = make_producer(kafka, **{"linger.ms": linger_ms,
                                                 "message.timeout.ms": int(timeout_s * 1000)})
        self._timeout_s = timeout_s

    def send(self, messages: Sequence[Outgoing]) -> PendingSends:
        """Hand `messages` to the producer's I/O thread; wait for the acks with the result."""
        pending = PendingSends(self._producer, self._timeout_s)
        produce, delivered = self._producer.produce, pending._delivered
        for m in messages:
            while True:
                try:
                    produce(m.topic, m.value, m.key, headers=list(m.headers) or None,
                            on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let the I/O thread drain it
                    self._producer.poll(0.05)
                except KafkaException as error:  # refused before sending (e.g. too large)
                    pending.errors.append(error.args[0])
                    break
            pending.sent += 1
        self._producer.poll(0)
        return pending

    def close(self) -> None:
        self._producer.flush(self._timeout_s)
