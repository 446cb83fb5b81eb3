"""Producing to Kafka from request handlers: wait for the acknowledgement, or fail loudly.

The producer is created on first use (and again after `close`), so the gateway starts and
answers health checks while Kafka is down, and a request that cannot be acknowledged within the
timeout gets `KafkaUnavailableError` (HTTP 503) instead of being dropped silently.

librdkafka (confluent-kafka) sends from its own threads but reports deliveries only inside
``poll()``: a daemon thread polls for as long as the producer exists and settles each waiter
(a thread in `send`, the event loop in `asend`). ``message.timeout.ms`` is the timeout, so an
unacknowledged record is reported failed rather than left waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from typing import NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from fraudops.kafka import make_producer
from fraudops.settings import KafkaSettings
from serving.exceptions import KafkaUnavailableError

log = logging.getLogger(__name__)

#: How long the waiter gives the delivery report beyond the producer's own timeout, which
#: reports the failure itself (this only guards against a report that never comes).
_REPORT_GRACE_S = 1.0


class Acknowledged(NamedTuple):
    """Where the broker put an acknowledged record."""

    topic: str
    partition: int
    offset: int


class _PolledProducer:
    """A librdkafka producer and the daemon thread that serves its delivery callbacks."""

    def __init__(self, producer: Producer, interval_s: float = 0.1) -> None:
        self.producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval_s,),
                                        name="kafka-delivery-reports", daemon=True)
        self._thread.start()

    def _poll(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self.producer.poll(interval_s)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued (up to `timeout_s`), then stop polling."""
        self.producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)


class AckedProducer:
    """Produces records and returns only once the broker has acknowledged them (acks=all)."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._polled: _PolledProducer | None = None
        self._lock = threading.Lock()

    def _get(self) -> Producer:
        with self._lock:
            if self._polled is None:
                try:
                    producer = make_producer(
                        self._kafka, **{"linger.ms": 1,
                                        "message.timeout.ms": int(self._timeout_s * 1000)})
                except KafkaException as error:  # a configuration librdkafka refuses
                    raise self._unavailable(error) from error
                self._polled = _PolledProducer(producer)
            return self._polled.producer

    def _unavailable(self, error: object) -> KafkaUnavailableError:
        return KafkaUnavailableError(
            f"Kafka at {self._kafka.bootstrap_servers} did not acknowledge the record within "
            f"{self._timeout_s:g}s ({_describe(error)}); nothing was accepted, retry later")

    def _produce(self, topic: str, key: bytes, value: bytes,
                 settle: concurrent.futures.Future | asyncio.Future,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hand the record to librdkafka; the poll thread settles `settle` on delivery."""

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                outcome = ("set_result",
                           Acknowledged(message.topic(), message.partition(), message.offset()))
            else:
                outcome = ("set_exception", self._unavailable(error))
            if loop is None:
                _settle(settle, *outcome)
            else:
                loop.call_soon_threadsafe(_settle, settle, *outcome)

        try:
            self._get().produce(topic, value, key, on_delivery=delivered)
        except (BufferError, KafkaException) as error:  # queue full, or refused before sending
            raise self._unavailable(error) from error

    def send(self, topic: str, key: bytes, value: bytes) -> Acknowledged:
        """Produce one record and block until it is acknowledged (acks=all)."""
        done: concurrent.futures.Future[Acknowledged] = concurrent.futures.Future()
        self._produce(topic, key, value, done)
        try:
            return done.result(self._timeout_s + _REPORT_GRACE_S)
        except TimeoutError as error:
            raise self._unavailable(error) from error

    async def asend(self, topic: str, key: bytes, value: bytes) -> Acknowledged:
        """`send` for the event loop: waits for the acknowledgement without holding a thread.

        librdkafka's ``produce`` only appends to its queue (creating the client opens no
        connection), so it runs on the loop; the acknowledgement comes back through the poll
        thread.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Acknowledged] = loop.create_future()
        self._produce(topic, key, value, done, loop)
        try:
            return await asyncio.wait_for(done, self._timeout_s + _REPORT_GRACE_S)
        except TimeoutError as error:
            raise self._unavailable(error) from error

    def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether a bootstrap broker accepts a connection (for readiness); never raises.

        A TCP probe rather than the client's own state: the producer keeps cached metadata and
        reconnects in the background, which says nothing about whether a broker answers now.
        """
        for server in self._kafka.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout_s):
                    return True
            except (OSError, ValueError):
                continue
        return False

    def close(self) -> None:
        with self._lock:
            if self._polled is not None:
                self._polled.close(self._timeout_s)
                self._polled = None


def _settle(future: concurrent.futures.Future | asyncio.Future, method: str,
            result: object) -> None:
    if not future.done():  # the waiter may have timed out already
        getattr(future, method)(result)


def _describe(error: object) -> str:
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return _describe(error.args[0])
    if isinstance(error, TimeoutError):
        return "no delivery report"
    return f"{type(error).__name__}: {error}"
