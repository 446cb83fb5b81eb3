"""Scoring and writing off the polling thread: the consumer's three-stage pipeline.

The polling thread ingests records (features, state) and hands a closed batch to the scoring
thread whenever that is idle, so it keeps fetching while the predictor and the database work,
and batches grow with the load on their own. The scoring thread calls the predictor and hands
the outcome to the writing thread, which produces the records and makes the batch durable.

With ``write_inline`` the scored batches are not written on a thread of their own: the polling
thread writes them (`write_scored`), after handing the next batch to the scoring thread, so that
only the wait for the predictor overlaps its own work.

Batches are written in the order they were taken. After any failure every later batch is
skipped (`BatchSkipped`) until the polling thread has dealt with it (`reset`): a checkpoint must
never be stored past a batch that was not.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass

from consumers.exceptions import ConsumerError
from consumers.kafka_io import KafkaSink, PendingSends
from consumers.metrics import ConsumerMetrics
from consumers.processor import BatchOutcome, PreparedBatch, StreamProcessor


class BatchSkipped(ConsumerError):
    """A batch not scored or written because an earlier one failed."""


@dataclass
class InFlight:
    """A batch handed to the pipeline; `scoring` resolves to the future of its write."""

    batch: PreparedBatch
    scoring: Future

    def done(self) -> bool:
        if not self.scoring.done():
            return False
        return self.scoring.exception() is not None or self.scoring.result().done()

    def outcome(self) -> BatchOutcome:
        """The written batch's outcome; raises what failed it (only once `done`)."""
        return self.scoring.result().result()


class ConsumerLoop:
    """The scoring and writing threads, and the batches in flight between them."""

    def __init__(self, processor: StreamProcessor, sink: KafkaSink, metrics: ConsumerMetrics,
                 on_written: Callable[[BatchOutcome], None] = lambda outcome: None,
                 max_queued_writes: int = 1, write_inline: bool = False) -> None:
        self.processor = processor
        self.sink = sink
        self.metrics = metrics
        self.on_written = on_written
        self._scorer = ThreadPoolExecutor(1, thread_name_prefix="fraud-score")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fraud-write")
        # Outcomes scored but not yet written: the scorer waits rather than run further ahead.
        self._write_slots = threading.BoundedSemaphore(1 + max_queued_writes)
        self._inflight: deque[InFlight] = deque()
        self._failure: BaseException | None = None
        self._write_inline = write_inline
        #: Scored batches waiting for `write_scored` (write_inline), in the order scored.
        self._scored: deque[tuple[Future, BatchOutcome]] = deque()

    @property
    def scorer_idle(self) -> bool:
        return not self._inflight or self._inflight[-1].scoring.done()

    @property
    def busy(self) -> bool:
        return bool(self._inflight)

    def wait_scorer_idle(self, timeout_s: float) -> None:
        """Block (without the GIL) until the scorer is idle again, at most `timeout_s`."""
        if self._inflight:
            wait([self._inflight[-1].scoring], timeout=timeout_s)

    def submit(self, batch: PreparedBatch) -> None:
        """Score, then write `batch` after every batch submitted before it."""
        self._inflight.append(InFlight(batch, self._scorer.submit(self._score, batch)))

    def write_scored(self) -> None:
        """Write, on this thread and in order, every batch scored so far (write_inline)."""
        while self._scored:
            future, outcome = self._scored.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._write(outcome))
            except Exception as error:  # noqa: BLE001 - the batch's fate, read back by `outcome()`
                future.set_exception(error)
            except BaseException as error:  # an interrupt: recorded, then on its way
                future.set_exception(error)
                raise

    def completed(self) -> Iterator[InFlight]:
        """Batches whose fate is known, oldest first (removed from the pipeline)."""
        while self._inflight and self._inflight[0].done():
            yield self._inflight.popleft()

    def drain(self) -> None:
        """Wait for every batch in flight to finish (written, failed or skipped); collect
        them with `completed`."""
        for inflight in list(self._inflight):
            wait([inflight.scoring])
            self.write_scored()
            if inflight.scoring.exception() is None:
                wait([inflight.scoring.result()])

    def reset(self) -> None:
        """Accept batches again after the polling thread handled a failure (empty pipeline)."""
        if self._inflight:
            raise RuntimeError("reset with batches in flight")
        self._failure = None

    def close(self) -> None:
        self.drain()
        self._scorer.shutdown()
        self._writer.shutdown()

    # -- the two threads ----------------------------------------------------------------------

    def _score(self, batch: PreparedBatch) -> Future:
        with self._guard(), self.metrics.stage("decide"):
            outcome = self.processor.decide(batch)
        self._write_slots.acquire()
        if self._write_inline:
            written: Future = Future()
            self._scored.append((written, outcome))
            return written
        return self._writer.submit(self._write, outcome)

    def _write(self, outcome: BatchOutcome) -> BatchOutcome:
        try:
            with self._guard():
                with self.metrics.stage("produce"):
                    sent = self.sink.send(outcome.outgoing)
                with self.metrics.stage("persist"):
                    # The acks are awaited inside the database transaction, before its commit:
                    # a decision is on the topic before it is durable in the store, never after.
                    self.processor.persist(outcome, before_commit=lambda: self._acks(sent))
        finally:
            self._write_slots.release()
        self.on_written(outcome)
        return outcome

    def _acks(self, sent: PendingSends) -> None:
        """Wait for the broker's acknowledgements (timed on its own: part of `persist`)."""
        with self.metrics.stage("acks"):
            sent.wait()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._failure is not None:
            raise BatchSkipped(f"an earlier batch failed: {self._failure}")
        try:
            yield
        except BaseException as error:
            self._failure = self._failure or error
            raise
