"""The stream processor: records in, decisions and durable effects out, in three steps.

1. `ingest` (the polling thread): decode, dead-letter poison, update the per-partition feature
   state and queue each transaction's sequence. `take` closes the queued records into a
   `PreparedBatch` with its partition checkpoints (and state snapshots when due).
2. `decide` (the scoring thread): one predictor call for the batch, decisions and messages.
3. `persist` (the writing thread): notifications planned against what is already stored, then
   one database transaction with everything.

Batches are persisted in the order they were taken, so each checkpoint's fencing token is the
offset its predecessor writes. `process` runs the three steps back to back on one thread.
Plain Python, no broker: the Kafka loop (`consumers.app`) drives it; tests drive it directly
with an injected scoring function. See `consumers.state` for how state, positions and effects
stay consistent across crashes.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from consumers.exceptions import PoisonMessageError, PredictorError
from consumers.messages import (
    Incoming,
    Outgoing,
    dead_letter,
    decision_message,
    parse_label,
    parse_transaction,
)
from consumers.metrics import ConsumerMetrics
from consumers.notifications import NotificationPlanner
from consumers.predictor import ScoreFn
from consumers.state import PartitionState, checkpoint_for, restore_partition
from fraudops.features import OnlineFeatureState
from fraudops.protocol import ScoreBatch
from fraudops.schema import Transaction
from fraudops.settings import TopicSettings
from fraudops.store import ALERT_DECISIONS, BatchWrite, DecisionRecord, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorConfig:
    """What the processor needs to know besides its collaborators."""

    group_id: str
    topics: TopicSettings = field(default_factory=TopicSettings)
    max_message_bytes: int = 64 * 1024
    snapshot_interval_s: float = 10.0
    model_version: str = ""


@dataclass
class BatchOutcome:
    """Everything one batch produces; shipped by the loop, then made durable by `persist`."""

    writes: BatchWrite = field(default_factory=BatchWrite)
    outgoing: list[Outgoing] = field(default_factory=list)
    #: (topic, partition) -> next offset to commit to Kafka.
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Event times (epoch seconds) of the decided transactions, for the latency histogram.
    event_times: list[float] = field(default_factory=list)
    replayed: int = 0

    @property
    def scored(self) -> int:
        return len(self.writes.decisions)


@dataclass
class PreparedBatch:
    """Ingested records waiting for the predictor, with what they already produced."""

    #: Every record ingested into the batch (rewound if the batch is lost).
    records: list[Incoming] = field(default_factory=list)
    #: The records to score, their transactions and model inputs.
    scored: list[Incoming] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    sequences: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)

    def __len__(self) -> int:
        return len(self.records)


class StreamProcessor:
    """Decodes, featurises, scores and decides micro-batches; owns per-partition state."""

    def __init__(self, config: ProcessorConfig, *, store: Store, score: ScoreFn,
                 new_state: Callable[[], OnlineFeatureState],
                 planner: NotificationPlanner | None = None,
                 metrics: ConsumerMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.score = score
        self.new_state = new_state
        self.planner = planner
        self.metrics = metrics or ConsumerMetrics()
        self.clock = clock
        self.partitions: dict[int, PartitionState] = {}
        self._pending = PreparedBatch()

    # -- assignment ---------------------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Restore the partitions' state; returns where to seek each (None: Kafka's position)."""
        group, topic = self.config.group_id, self.config.topics.transactions
        checkpoints = self.store.load_checkpoints(group, topic)
        seeks = {}
        for partition in partitions:
            state, seek = restore_partition(
                partition, checkpoints.get(partition), self.new_state,
                lambda p=partition: self.store.load_state(group, topic, p))
            self.partitions[partition] = state
            seeks[partition] = seek
        return seeks

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the partitions' state (the next owner restores it from the store)."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    # -- processing ---------------------------------------------------------------------------

    def process(self, records: Sequence[Incoming]) -> BatchOutcome:
        """Ingest, take and decide one micro-batch on the calling thread."""
        self.ingest(records)
        return self.decide(self.take())

    def ingest(self, records: Sequence[Incoming]) -> None:
        """Apply records to the state and queue them for the next batch."""
        batch = self._pending
        batch.records.extend(records)
        for record in records:
            if record.topic == self.config.topics.labels:
                self._label(record, batch.outcome)
            else:
                self._transaction(record, batch)

    @property
    def pending(self) -> int:
        """Records ingested since the last `take`."""
        return len(self._pending)

    def take(self) -> PreparedBatch:
        """Close the queued records into a batch, with checkpoints matching the state now."""
        batch, self._pending = self._pending, PreparedBatch()
        self._checkpoint(batch.outcome)
        return batch

    def discard_pending(self) -> list[Incoming]:
        """Drop the queued records (their partitions must be re-synchronised); returns them."""
        batch, self._pending = self._pending, PreparedBatch()
        return batch.records

    def _label(self, record: Incoming, outcome: BatchOutcome) -> None:
        outcome.offsets[(record.topic, record.partition)] = record.offset + 1
        try:
            outcome.writes.labels.append(parse_label(record.value, self.config.max_message_bytes))
        except PoisonMessageError as error:
            self._dead_letter(record, error, outcome)

    def _transaction(self, record: Incoming, batch: PreparedBatch) -> None:
        state = self.partitions.get(record.partition)
        if state is None or not state.accepts(record.offset):
            return  # revoked, or already applied (a re-fetch after a seek)
        outcome = batch.outcome
        state.position = record.offset + 1
        outcome.offsets[(record.topic, record.partition)] = record.offset + 1
        replay = record.offset < state.replay_until
        try:
            tx = parse_transaction(record.value, self.config.max_message_bytes)
        except PoisonMessageError as error:
            if not replay:  # its dead letter was produced in an earlier life
                self._dead_letter(record, error, outcome)
            return
        _, sequence, mask = state.features.update(tx)
        if replay:
            outcome.replayed += 1
            return
        batch.scored.append(record)
        batch.transactions.append(tx)
        batch.sequences.append(sequence)
        batch.masks.append(mask)

    def decide(self, batch: PreparedBatch) -> BatchOutcome:
        """Score the batch (one predictor call) and turn the scores into decisions."""
        if batch.scored:
            scores = self.score(np.stack(batch.sequences), np.stack(batch.masks))
            self._decide(batch, scores)
        return batch.outcome

    def _dead_letter(self, record: Incoming, error: PoisonMessageError,
                     outcome: BatchOutcome) -> None:
        log.warning("dead-lettering %s/%d/%d: %s", record.topic, record.partition, record.offset,
                    error)
        outcome.outgoing.append(dead_letter(record, error, self.config.topics.dead_letter))
        self.metrics.dead_letters.labels(reason=error.reason).inc()

    def _decide(self, batch: PreparedBatch, result: ScoreBatch) -> None:
        if not (np.isfinite(result.fraud_probability).all()
                and np.isfinite(result.anomaly_score).all()):
            raise PredictorError("predictor returned non-finite scores; batch not committed")
        outcome = batch.outcome
        decided_at = datetime.fromtimestamp(self.clock(), UTC).isoformat()
        version = result.model_version or self.config.model_version
        version_json = json.dumps(version)
        probabilities = result.fraud_probability.tolist()
        anomalies = result.anomaly_score.tolist()
        topics = self.config.topics
        for i, (record, tx) in enumerate(zip(batch.scored, batch.transactions, strict=True)):
            codes = result.reason_codes[i] if i < len(result.reason_codes) else ()
            decision = DecisionRecord(
                transaction_id=tx.transaction_id, account_id=tx.account_id,
                event_time=tx.timestamp, amount=tx.amount, fraud_probability=probabilities[i],
                anomaly_score=anomalies[i], decision=result.decision[i],
                transaction_json=record.value.decode(), reason_codes=",".join(codes),
                model_version=version)
            outcome.writes.decisions.append(decision)
            message = decision_message(decision, decided_at, codes, topics.decisions,
                                       version_json)
            outcome.outgoing.append(message)
            if decision.is_alert:
                outcome.outgoing.append(replace(message, topic=topics.alerts))
            outcome.event_times.append(tx.epoch_seconds)

    def _checkpoint(self, outcome: BatchOutcome) -> None:
        start = now = time.monotonic()
        topic = self.config.topics.transactions
        for (record_topic, partition), next_offset in outcome.offsets.items():
            state = self.partitions.get(partition)
            if record_topic != topic or state is None:
                continue
            checkpoint = checkpoint_for(
                state, group_id=self.config.group_id, topic=topic, next_offset=next_offset,
                now=now, snapshot_interval_s=self.config.snapshot_interval_s)
            outcome.writes.checkpoints.append(checkpoint)
            # The next batch is fenced on this one's position: batches are persisted in
            # order, and a failed write re-synchronises the partition from the store.
            state.stored_offset = checkpoint.next_offset
            if checkpoint.snapshot is not None:
                state.last_snapshot = now
        if any(c.snapshot is not None for c in outcome.writes.checkpoints):
            self.metrics.stage_latency.labels(stage="snapshot").observe(time.monotonic() - start)

    # -- durability ---------------------------------------------------------------------------

    def persist(self, outcome: BatchOutcome,
                before_commit: Callable[[], None] | None = None) -> None:
        """Write the batch's effects and positions in one transaction, then count them.

        Notifications are planned here, against the notifications already stored (earlier
        batches are durable by now), so the per-account rate limit holds across batches.
        `before_commit` runs inside the transaction (what it raises rolls the batch back).
        Raises `StaleCheckpointError` when another consumer took a partition over: nothing
        was written and the caller must re-synchronise (`resync`).
        """
        if self.planner is not None and outcome.writes.decisions:
            outcome.writes.notifications = self.planner.plan(outcome.writes.decisions)
        self.store.write_batch(outcome.writes, before_commit=before_commit)
        self._observe(outcome)

    def _observe(self, outcome: BatchOutcome) -> None:
        m = self.metrics
        now = self.clock()
        for event_time in outcome.event_times:
            m.event_to_decision.observe(max(0.0, now - event_time))
        for decision, count in Counter(d.decision for d in outcome.writes.decisions).items():
            m.scored.labels(decision=decision).inc(count)
            if decision in ALERT_DECISIONS:
                m.alerts.labels(decision=decision).inc(count)
        if outcome.scored:
            m.batch_size.observe(outcome.scored)
        if outcome.replayed:
            m.replayed.inc(outcome.replayed)
        if outcome.writes.labels:
            m.labels.inc(len(outcome.writes.labels))

    def resync(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Drop and re-restore partitions from the store (after a `StaleCheckpointError`)."""
        partitions = list(partitions)
        self.revoke(partitions)
        return self.assign(partitions)
