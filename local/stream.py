"""Replays the demo stream into Kafka at a steady rate, on its own thread.

Messages are `Transaction` JSON keyed by account (so one account's events stay in order on one
partition). Pacing is a simple schedule: by `t` seconds after the start, `rate * t` events are
due; the thread sends what is due and sleeps a tick, so a slow moment is caught up rather than
lost.

With a label stream, each verdict goes to the `labels` topic (a `TransactionLabel`, keyed by
account like the gateway's) as soon as the stream's event time has passed its `labelled_at`:
the platform hears of a verdict when it would have, in the stream's own time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from confluent_kafka import KafkaError, Producer

from fraudops.data import tabular
from fraudops.kafka import make_producer
from fraudops.schema import Transaction, TransactionLabel
from fraudops.settings import KafkaSettings

TICK_S = 0.02


@dataclass
class StreamProgress:
    """What the producer has done so far (read by the live view; written by one thread)."""

    total: int
    sent: int = 0
    failed: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    drift_sent_at: float | None = None  # monotonic time the first drifted event went out
    labels_sent: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class StreamProducer:
    """Produces `frame`'s rows to `topic` at `rate` events per second until done or stopped,
    and `labels` (a label stream, in time order) to `labels_topic` as event time passes them."""

    def __init__(self, producer_factory: Callable[[], Producer], topic: str,
                 frame: pd.DataFrame, rate: float, drift_mask: pd.Series | None = None,
                 limit: int | None = None, labels: pd.DataFrame | None = None,
                 labels_topic: str = "labels") -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._factory = producer_factory
        self._topic = topic
        self._frame = frame
        self._labels = _label_messages(labels)
        self._label_times = (labels["labelled_at"].to_numpy(dtype="datetime64[us]")
                             if labels is not None else np.array([], dtype="datetime64[us]"))
        self._labels_topic = labels_topic
        self._rate = rate
        self._drift = (drift_mask.to_numpy() if drift_mask is not None
                       else [False] * len(frame))
        #: Rows to send unless `extend` raises it (at most the frame's length).
        self.progress = StreamProgress(total=min(len(frame), limit or len(frame)))
        #: Wall-clock time (epoch seconds) each row was handed to Kafka; NaN if never sent.
        self.sent_at = np.full(len(frame), np.nan)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def extend(self) -> bool:
        """Allow the whole frame (the reserve too); False if nothing is left to extend to."""
        if self.progress.total >= len(self._frame) or self.done:
            return False
        self.progress.total = len(self._frame)
        return True

    def stop(self) -> None:
        """Stop producing (what is in flight is still flushed)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.progress.finished_at is not None

    def _run(self) -> None:
        producer = self._factory()
        progress = self.progress
        progress.started_at = time.monotonic()
        try:
            self._produce_all(producer)
        except Exception as error:  # noqa: BLE001 - reported in the summary, not a crash
            progress.errors.append(f"{type(error).__name__}: {error}")
        finally:
            unacknowledged = producer.flush(30)
            if unacknowledged:
                progress.errors.append(f"{unacknowledged} records not acknowledged within 30 s")
            progress.finished_at = time.monotonic()

    def _produce_all(self, producer: Producer) -> None:
        progress = self.progress
        records = tabular.to_records(self._frame)
        times = self._frame["timestamp"].to_numpy(dtype="datetime64[us]")
        for index, record in enumerate(records):
            while not self._stop.is_set() and index >= self._due():
                producer.poll(TICK_S)  # waits a tick and serves the delivery reports
            if self._stop.is_set() or index >= progress.total:
                return
            tx = Transaction.model_validate(record)
            self._send(producer, self._topic, tx.account_id.encode(),
                       tx.model_dump_json().encode())
            self.sent_at[index] = time.time()
            progress.sent += 1
            if self._drift[index] and progress.drift_sent_at is None:
                progress.drift_sent_at = time.monotonic()
            self._send_labels(producer, times[index])

    def _send_labels(self, producer: Producer, now: np.datetime64) -> None:
        """Send every label known by event time `now` (labelled at or before it)."""
        progress = self.progress
        due = int(np.searchsorted(self._label_times, now, side="right"))
        for key, value in self._labels[progress.labels_sent:due]:
            self._send(producer, self._labels_topic, key, value)
        progress.labels_sent = max(progress.labels_sent, due)

    def _due(self) -> float:
        return (time.monotonic() - (self.progress.started_at or 0.0)) * self._rate

    def _send(self, producer: Producer, topic: str, key: bytes, value: bytes) -> None:
        """Queue one record; a full local queue waits for the I/O thread to drain it."""
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=self._delivered)
                producer.poll(0)
                return
            except BufferError:
                producer.poll(TICK_S)

    def _delivered(self, error: KafkaError | None, message: object) -> None:
        if error is not None:
            self._failed(error)

    def _failed(self, error: KafkaError | BaseException) -> None:
        self.progress.failed += 1
        if len(self.progress.errors) < 5:
            self.progress.errors.append(f"{type(error).__name__}: {error}")


def _label_messages(labels: pd.DataFrame | None) -> list[tuple[bytes, bytes]]:
    """(key, value) of each label as the `labels` topic carries it: validated like any label."""
    if labels is None:
        return []
    messages = []
    for row in labels.to_dict("records"):
        fields = {k: v for k, v in row.items() if v is not None and v is not pd.NA}
        label = TransactionLabel.model_validate(
            fields | {"label": int(fields["label"]),
                      "labelled_at": fields["labelled_at"].to_pydatetime()})
        messages.append(((label.account_id or label.transaction_id).encode(),
                         label.model_dump_json(exclude_none=True).encode()))
    return messages


#: How long the replay gathers records into one batch. tansu's memory engine (the demo's
#: broker) scans a partition's stored batches on every fetch: at 200 tx/s, 20 ms batches of one
#: or two records each put 20,000 batches in the transactions topic within two minutes, the
#: broker then took 75% of a core (100% at 40,000) and the consumer's fetches stalled for a
#: minute and more (CI's demo: 38,160 of 45,785 decided). `benchmarks/bench_tansu_fetch.py`
#: measures it. 100 ms batches hold five times as many records.
LINGER_MS = 100


def kafka_producer(bootstrap: str, linger_ms: int = LINGER_MS) -> Producer:
    """A producer tuned for the local broker (lingering batches, all acks)."""
    return make_producer(KafkaSettings(bootstrap_servers=bootstrap),
                         **{"linger.ms": linger_ms, "batch.size": 256 * 1024, "retries": 5})
