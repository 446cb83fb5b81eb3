"""`KafkaSink` on the session's real broker: keyed records land where Kafka's default (Java)
partitioner puts them, as every other producer of the platform places them; every record is
acknowledged before `wait` returns, and a failure says how many were lost.

The partitions are checked against a reference murmur2 written here from the Java algorithm
(`org.apache.kafka.common.utils.Utils.murmur2`), itself checked against the Java test's
vectors: not against another librdkafka producer, which would agree with the sink by
construction."""

from __future__ import annotations

import threading
import time

import pytest
from consumer_helpers import make_topics, read_topic

from consumers.exceptions import ConsumerError
from consumers.kafka_io import KafkaSink, PendingSends
from consumers.messages import Outgoing
from fraudops.settings import KafkaSettings

#: Kafka's own vectors for its murmur2 (clients' UtilsTest.testMurmur2), as signed Java ints.
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482,
                b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
                b"abc": 479470107}


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c) as an unsigned 32-bit value."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[length - length % 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & mask
    h = ((h ^ (h >> 13)) * m) & mask
    return h ^ (h >> 15)


def java_partition(key: bytes, partitions: int) -> int:
    """Where the Java client's default partitioner puts a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_the_reference_murmur2_matches_the_java_vectors() -> None:
    assert {data: murmur2(data) - (1 << 32) * (murmur2(data) >> 31)
            for data in JAVA_MURMUR2} == JAVA_MURMUR2


@pytest.mark.integration
def test_keyed_records_go_where_the_default_partitioner_puts_them(kafka_broker) -> None:
    topic = make_topics(kafka_broker, partitions=5).decisions
    keys = [f"acc-{i}".encode() for i in range(200)] + [b"", "ü-é".encode(), b"acc-1"]
    sink = KafkaSink(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap))
    try:
        sent = sink.send([Outgoing(topic, key, f"sink-{i}".encode(), (("h", b"v"),))
                          for i, key in enumerate(keys)]
                         + [Outgoing(topic, None, b"unkeyed")])
        sent.wait()
        assert sent.acknowledged == len(keys) + 1
    finally:
        sink.close()
    theirs = [java_partition(key, 5) for key in keys]
    records = read_topic(kafka_broker, topic, len(keys) + 1)
    ours = {r.value.decode(): r for r in records if r.value.startswith(b"sink-")}
    assert [ours[f"sink-{i}"].partition for i in range(len(keys))] == theirs
    assert all(ours[f"sink-{i}"].headers == [("h", b"v")] for i in range(len(keys)))
    assert len(set(theirs)) == 5  # every partition used: the test can tell them apart


@pytest.mark.integration
def test_a_record_the_broker_refuses_fails_the_wait(kafka_broker) -> None:
    topics = make_topics(kafka_broker, partitions=1)
    sink = KafkaSink(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), timeout_s=10)
    try:
        sent = sink.send([Outgoing(topics.decisions, b"k", b"fine"),
                          Outgoing(topics.decisions, b"k", b"x" * (3 * 1024 * 1024))])
        with pytest.raises(ConsumerError, match="1 of 2 records not produced"):
            sent.wait()
    finally:
        sink.close()


@pytest.mark.integration
def test_the_wait_sends_what_lingers_at_once(kafka_broker) -> None:
    """The sink lingers to gather a batch's records into few requests while the batch's
    database work runs; the wait for the acks must not sit out the linger."""
    topic = make_topics(kafka_broker, partitions=3).decisions
    sink = KafkaSink(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap), linger_ms=5_000)
    try:
        sink.send([Outgoing(topic, b"warm", b"up")]).wait()  # connections and metadata
        started = time.monotonic()
        sent = sink.send([Outgoing(topic, f"k{i}".encode(), b"v") for i in range(50)])
        sent.wait()
        waited = time.monotonic() - started
    finally:
        sink.close()
    assert sent.acknowledged == 50
    assert waited < 2.5, f"acks took {waited:.2f} s with a 5 s linger"


@pytest.mark.integration
def test_the_wait_returns_with_its_own_acks_while_another_thread_produces(kafka_broker) -> None:
    """Behind a snapshot the writing thread waits for a batch's acks while the polling thread
    goes on producing the next batches (`consumers.pipeline`): the wait returns with this
    batch's records acknowledged, and the other thread's too in the end."""
    topic = make_topics(kafka_broker, partitions=3).decisions
    sink = KafkaSink(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap))
    stop, others = threading.Event(), []

    def produce_on() -> None:
        while not stop.is_set():
            others.append(sink.send([Outgoing(topic, f"o{i}".encode(), b"other")
                                     for i in range(20)]))
            time.sleep(0.003)

    try:
        sink.send([Outgoing(topic, b"warm", b"up")]).wait()  # connections and metadata
        producer = threading.Thread(target=produce_on)
        producer.start()
        time.sleep(0.2)
        started = time.monotonic()
        sent = sink.send([Outgoing(topic, f"k{i}".encode(), b"v") for i in range(50)])
        sent.wait()
        waited = time.monotonic() - started
        busy = not stop.is_set() and producer.is_alive()
        stop.set()
        producer.join()
        for other in others:
            other.wait()
    finally:
        stop.set()
        sink.close()
    assert sent.acknowledged == 50 and not sent.errors
    assert busy and len(others) > 20  # the other thread was producing all along
    assert waited < 1.0, f"acks took {waited:.2f} s"


def test_the_wait_checks_its_own_acks_between_short_flushes() -> None:
    """A flush returns when the producer's whole queue is empty, or at its timeout: with
    another thread producing, the queue may never empty, so the wait flushes in short steps
    and returns as soon as its own records are acknowledged (a stand-in producer whose queue
    never empties, no broker needed)."""
    class NeverEmpty:
        def __init__(self) -> None:
            self.calls: list[float] = []

        def flush(self, timeout: float) -> int:
            self.calls.append(timeout)
            for _ in range(pending.sent - pending.acknowledged):
                pending._delivered(None, None)
            time.sleep(timeout)  # the queue never empties: the whole timeout goes
            return 1

    producer = NeverEmpty()
    pending = PendingSends(producer, timeout_s=5.0)
    pending.sent = 3
    started = time.monotonic()
    pending.wait()
    assert pending.acknowledged == 3
    assert len(producer.calls) == 1 and time.monotonic() - started < 0.1
