"""Scoring and writing off the polling thread: the consumer's three-stage pipeline.

The polling thread ingests records (features, state) and hands a closed batch to the scoring
thread whenever that is idle, so it keeps fetching while the predictor and the database work,
and batches grow with the load on their own. The scoring thread calls the predictor and hands
the outcome to the writing thread, which produces the records and makes the batch durable.

With ``write_inline`` the scored batches are not written on a thread of their own: the polling
thread writes them (`write_scored`), after handing the next batch to the scoring thread, so that
only the wait for the predictor overlaps its own work. Except behind a state snapshot: a batch
that carries one (the partition's changed entries, megabytes at a time) is persisted on the
writing thread, and so is every batch scored while that thread still works, so that polling and
scoring go on meanwhile (an inline snapshot write of 1,000 tx/s held the polling thread 40-50
ms, the worst latencies of a run). Those batches are still produced on the polling thread, in
order, as soon as they are taken from the scorer: their decisions go out at once, and only
their database transactions wait for the snapshot's.

Batches are written in the order they were taken. After any failure every later batch is
skipped (`BatchSkipped`) until the polling thread has dealt with it (`reset`): a checkpoint must
never be stored past a batch that was not.
"""

from __future__ import annotations

import functools
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

#: Batches the scorer may run ahead of the writes while the writing thread persists a snapshot
#: (`write_inline`): at 1,000 tx/s a 50 ms snapshot write lets about ten batches be scored.
WRITE_BEHIND_SLOTS = 32


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
        # Outcomes scored but not yet written: the scorer waits rather than run further ahead
        # (writing inline, as far as a snapshot written behind lets it: see the module doc).
        queued = max(max_queued_writes, WRITE_BEHIND_SLOTS) if write_inline else max_queued_writes
        self._write_slots = threading.BoundedSemaphore(1 + queued)
        self._inflight: deque[InFlight] = deque()
        self._failure: BaseException | None = None
        self._write_inline = write_inline
        #: Scored batches waiting for `write_scored` (write_inline), in the order scored.
        self._scored: deque[tuple[Future, BatchOutcome]] = deque()
        #: The last batch handed to the writing thread by `write_scored` (None: none yet).
        self._behind: Future | None = None

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
        """Write, in order, every batch scored so far (write_inline): on this thread, except a
        batch with a snapshot and those after it while the writing thread works, which are
        produced here and persisted there (see the module doc)."""
        while self._scored:
            future, outcome = self._scored.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            behind = self._behind is not None and not self._behind.done()
            try:
                if behind or any(c.snapshot is not None for c in outcome.writes.checkpoints):
                    self._write_behind(future, outcome)
                else:
                    future.set_result(self._write(outcome))
            except Exception as error:  # noqa: BLE001 - the batch's fate, read back by `outcome()`
                future.set_exception(error)
            except BaseException as error:  # an interrupt: recorded, then on its way
                future.set_exception(error)
                raise

    def _write_behind(self, future: Future, outcome: BatchOutcome) -> None:
        """Produce `outcome` here, persist it on the writing thread after what it holds;
        `future` resolves with the write."""
        try:
            sent = self._produce(outcome)
        except BaseException:
            self._write_slots.release()
            raise
        self._behind = self._writer.submit(self._persist, outcome, sent)
        self._behind.add_done_callback(functools.partial(_resolve, future))

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
            sent = self._produce(outcome)
        except BaseException:
            self._write_slots.release()
            raise
        return self._persist(outcome, sent)

    def _produce(self, outcome: BatchOutcome) -> PendingSends:
        with self._guard(), self.metrics.stage("produce"):
            return self.sink.send(outcome.outgoing)

    def _persist(self, outcome: BatchOutcome, sent: PendingSends) -> BatchOutcome:
        try:
            with self._guard(), self.metrics.stage("persist"):
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


def _resolve(future: Future, done: Future) -> None:
    """Give `future` the result or exception of `done`."""
    if done.cancelled():  # the writing thread was shut down before it came to this batch
        future.set_exception(BatchSkipped("the writing thread stopped before this batch"))
        return
    error = done.exception()
    if error is None:
        future.set_result(done.result())
    else:
        future.set_exception(error)
