"""Producing to Kafka from request handlers: wait for the acknowledgement, or fail loudly.

The producer is created on first use (and again after a failure to create it), so the gateway
starts and answers health checks while Kafka is down, and a request that cannot be
acknowledged gets `KafkaUnavailableError` (HTTP 503) instead of being dropped silently.
"""

from __future__ import annotations

import asyncio
import socket
import threading

from fastapi.concurrency import run_in_threadpool
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import RecordMetadata

from fraudops.settings import KafkaSettings
from serving.exceptions import KafkaUnavailableError


class AckedProducer:
    """kafka-python producer that returns only once the broker has acknowledged the record."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self._warm_topics: set[str] = set()

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self._timeout_s * 1000)
                try:
                    self._producer = KafkaProducer(
                        **self._kafka.client_options(), acks="all", linger_ms=1,
                        max_block_ms=timeout_ms, request_timeout_ms=timeout_ms,
                        delivery_timeout_ms=timeout_ms + 1000, bootstrap_timeout_ms=timeout_ms)
                except KafkaError as error:
                    raise self._unavailable(error) from error
            return self._producer

    def _unavailable(self, error: Exception) -> KafkaUnavailableError:
        return KafkaUnavailableError(
            f"Kafka at {self._kafka.bootstrap_servers} did not acknowledge the record within "
            f"{self._timeout_s:g}s ({type(error).__name__}: {error}); nothing was accepted, "
            "retry later")

    def send(self, topic: str, key: bytes, value: bytes) -> RecordMetadata:
        """Produce one record and block until it is acknowledged (acks=all)."""
        producer = self._get()
        try:
            return producer.send(topic, key=key, value=value).get(timeout=self._timeout_s)
        except KafkaError as error:
            raise self._unavailable(error) from error

    async def asend(self, topic: str, key: bytes, value: bytes) -> RecordMetadata:
        """`send` for the event loop: waits for the acknowledgement without holding a thread.

        `KafkaProducer.send` itself can block (creating the client, or fetching a topic's
        metadata the first time), so those first calls run on a worker thread; afterwards
        `send` only appends to the producer's buffer and the acknowledgement arrives through a
        callback from kafka-python's I/O thread.
        """
        if self._producer is None or topic not in self._warm_topics:
            metadata = await run_in_threadpool(self.send, topic, key, value)
            self._warm_topics.add(topic)
            return metadata
        loop = asyncio.get_running_loop()
        done: asyncio.Future[RecordMetadata] = loop.create_future()

        def settle(method: str, result: object) -> None:
            loop.call_soon_threadsafe(_settle, done, method, result)

        try:
            future = self._producer.send(topic, key=key, value=value)
        except KafkaError as error:
            raise self._unavailable(error) from error
        future.add_callback(lambda metadata: settle("set_result", metadata))
        future.add_errback(lambda error: settle("set_exception", error))
        try:
            return await asyncio.wait_for(done, self._timeout_s)
        except (KafkaError, TimeoutError) as error:
            raise self._unavailable(error) from error

    def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether a bootstrap broker accepts a connection (for readiness); never raises.

        A TCP probe rather than the client's own state: kafka-python drops its bootstrap
        connection once it has metadata, and a cached metadata answer says nothing about now.
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
            if self._producer is not None:
                self._producer.close(timeout=self._timeout_s)
                self._producer = None
                self._warm_topics.clear()


def _settle(future: asyncio.Future, method: str, result: object) -> None:
    if not future.done():  # the waiter may have timed out already
        getattr(future, method)(result)
