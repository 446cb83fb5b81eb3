"""Helpers that the tests and the benchmarks share: a free port, waiting for a port, for an HTTP
endpoint or for any condition, a real HTTP server with a handler of the test's.

In the package (not under tests/) so that both import it the same way, with or without the
repository root on ``sys.path``. Nothing here runs at import time; nothing in the units uses it.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A threading HTTP server on a free loopback port, serving with `handler` until the block
    ends (its URL: ``http://127.0.0.1:{server.server_port}``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1,
               what: str = "condition") -> None:
    """Return once `predicate()` is true; `TimeoutError` naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not met after {timeout}s")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on `host`:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Return once something listens on `host`:`port`; `TimeoutError` after `timeout` s."""
    wait_until(lambda: port_open(port, host), timeout, 0.05, f"a listener on {host}:{port}")


def wait_for_http(url: str, timeout: float = 60.0, *, process: subprocess.Popen | None = None,
                  log: Path | None = None, status: int = 200) -> None:
    """Return once GET `url` answers `status`.

    With `process`, fails at once (`RuntimeError`, with the end of `log`) when it exits first,
    instead of waiting out the timeout for a service that is gone.
    """
    def answers() -> bool:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log is not None else ""
            raise RuntimeError(f"exited with {process.returncode} before {url} answered:\n{tail}")
        try:
            return httpx.get(url, timeout=1.0).status_code == status
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, 0.2, f"{url} answering {status}")


@dataclass(frozen=True)
class TopicRecord:
    """A record read back from Kafka, as plain attributes (headers as (name, value) pairs)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int  # milliseconds since the epoch


def read_records(bootstrap: str, topics: str | Sequence[str],
                 until: Callable[[list[TopicRecord]], bool] | None = None,
                 timeout: float = 20.0, idle_s: float = 1.0) -> list[TopicRecord]:
    """The records of `topics` from their first offsets, read without a consumer group.

    Reads until `until(records)` holds, or without `until` until nothing arrived for `idle_s`;
    at most `timeout` seconds either way (the caller checks what it got).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fraudops-tests-reader",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    records: list[TopicRecord] = []
    try:
        names = [topics] if isinstance(topics, str) else list(topics)
        metadata = consumer.list_topics(timeout=timeout).topics
        consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING) for name in names
                         for partition in metadata[name].partitions])
        deadline = last = time.monotonic()
        deadline += timeout
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 0.2) if m.error() is None]
            records += [TopicRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                    list(m.headers() or ()), m.timestamp()[1]) for m in batch]
            if until is not None and until(records):
                break
            last = time.monotonic() if batch else last
            if until is None and time.monotonic() - last >= idle_s:
                break
    finally:
        consumer.close()
    return records
