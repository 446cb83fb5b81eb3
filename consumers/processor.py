"""The stream processor: records in, decisions and durable effects out, in three steps.

1. `ingest` (the polling thread): decode, dead-letter poison, look the poll's transaction ids
   up (one query: `consumers.idempotency`), publish again the decisions of redelivered ones,
   dead-letter conflicting duplicates and events later than the event-time policy allows,
   update the per-partition feature state and queue each new transaction's sequence. `take`
   closes the queued records into a `PreparedBatch` with its partition checkpoints (and state
   snapshots when due).
2. `decide` (the scoring thread): one predictor call for the batch, decisions and messages.
3. `persist` (the writing thread): notifications planned against what is already stored, then
   one database transaction with everything.

No single message can stop the stream: whatever handling one message raises (parsing,
validation, features, state) dead-letters that message (`processing_error`, with the
exception's type) and the loop goes on. Only infrastructure failures (the store, the predictor,
the broker) leave `ingest`, `decide` and `persist` as exceptions, and a `DeadLetterBreaker`
tells the loop when most messages are dead-lettered (a broken producer).

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
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
from pydantic import ValidationError

from consumers.batches import BatchOutcome, PreparedBatch, ProcessorConfig
from consumers.deadletters import DeadLetterBreaker, RateLimitedLog
from consumers.exceptions import PoisonMessageError, PredictorError
from consumers.idempotency import Known, Pending, PendingTransactions, Verdict, is_source, judge
from consumers.messages import (
    REASON_CONFLICTING,
    REASON_TOO_LATE,
    Incoming,
    dead_letter,
    decision_message,
    given_features,
    is_label,
    parse_label,
    parse_transaction,
    stored_decision_message,
    unexpected_error,
)
from consumers.metrics import ConsumerMetrics, observe_many
from consumers.notifications import NotificationPlanner
from consumers.predictor import ScoreFn
from consumers.state import PartitionState, checkpoint_for, restore_partitions
from fraudops.features import OnlineFeatureState
from fraudops.protocol import ScoreBatch
from fraudops.rules import RuleOutcome, RuleSource, decide_batch
from fraudops.schema import Transaction, TransactionLabel
from fraudops.store import ALERT_DECISIONS, DecisionRecord, LabelRecord, RecordSource, Store

#: The batch types live in `consumers.batches`; the loop and the pipeline import them here.
__all__ = ["BatchOutcome", "PreparedBatch", "ProcessorConfig", "StreamProcessor"]

log = logging.getLogger(__name__)


class StreamProcessor:
    """Decodes, featurises, scores and decides micro-batches; owns per-partition state."""

    def __init__(self, config: ProcessorConfig, *, store: Store, score: ScoreFn,
                 new_state: Callable[[], OnlineFeatureState],
                 planner: NotificationPlanner | None = None,
                 metrics: ConsumerMetrics | None = None,
                 clock: Callable[[], float] = time.time,
                 rules: RuleSource | None = None) -> None:
        self.config = config
        self.store = store
        self.score = score
        self.new_state = new_state
        self.planner = planner
        self.metrics = metrics or ConsumerMetrics()
        self.clock = clock
        #: The rule set and lists in force (None: decisions by the model alone).
        self.rules = rules
        self.partitions: dict[int, PartitionState] = {}
        #: Transactions applied and queued, not yet durable (see `consumers.idempotency`).
        self.in_flight = PendingTransactions()
        self.breaker = DeadLetterBreaker(config.breaker_window, config.breaker_share)
        self._warnings = RateLimitedLog(log)
        self._pending = PreparedBatch()

    # -- assignment ---------------------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Restore the partitions' state; returns where to seek each (None: nothing stored, from
        the partition's first record)."""
        restored = restore_partitions(self.store, self.config.group_id,
                                      self.config.topics.transactions, partitions, self.new_state)
        seeks = {}
        for partition, (state, seek) in restored.items():
            self.partitions[partition] = state
            seeks[partition] = seek
        return seeks

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the partitions' state and their transactions not yet durable (the next owner
        restores the state from the store and reads those records again)."""
        partitions = list(partitions)
        for partition in partitions:
            self.partitions.pop(partition, None)
        self.in_flight.drop_partitions(partitions)

    # -- processing ---------------------------------------------------------------------------

    def process(self, records: Sequence[Incoming]) -> BatchOutcome:
        """Ingest, take and decide one micro-batch on the calling thread."""
        self.ingest(records)
        return self.decide(self.take())

    def ingest(self, records: Sequence[Incoming]) -> None:
        """Apply records to the state and queue them for the next batch.

        Raises only when the store cannot be read (the poll's one id lookup); a message that
        cannot be handled is dead-lettered.
        """
        batch = self._pending
        batch.records.extend(records)
        parsed = [self._parse(record) for record in records]
        known = self._lookup(parsed)
        labels = self.config.topics.labels
        for record, item in zip(records, parsed, strict=True):
            try:
                if is_label(record, labels):
                    self._label(record, item, batch.outcome, known)
                else:
                    self._transaction(record, item, batch, known)
            except Exception as error:  # noqa: BLE001 - one message must not stop the stream
                self._dead_letter(record, unexpected_error(error), batch.outcome, trace=True)

    @property
    def pending(self) -> int:
        """Records ingested since the last `take`."""
        return len(self._pending)

    def take(self) -> PreparedBatch:
        """Close the queued records into a batch, with checkpoints matching the state now."""
        batch, self._pending = self._pending, PreparedBatch()
        self._checkpoint(batch.outcome)
        self.metrics.dead_letter_ratio.set(self.breaker.share)
        self._warnings.flush()
        return batch

    def discard_pending(self) -> list[Incoming]:
        """Drop the queued records (their partitions must be re-synchronised); returns them."""
        batch, self._pending = self._pending, PreparedBatch()
        self.in_flight.forget(tx.transaction_id for tx in batch.transactions)
        return batch.records

    def _parse(self, record: Incoming) -> Transaction | TransactionLabel | PoisonMessageError:
        limit = self.config.max_message_bytes
        try:
            if is_label(record, self.config.topics.labels):
                return parse_label(record.value, limit)
            return parse_transaction(record.value, limit)
        except PoisonMessageError as error:
            return error
        except Exception as error:  # noqa: BLE001 - a validator bug: still this message's
            return unexpected_error(error)

    def _lookup(self, parsed: list) -> Known:
        """What is decided or in flight among the poll's transaction ids (one store query)."""
        ids = {item.transaction_id for item in parsed
               if isinstance(item, (Transaction, TransactionLabel))}
        if not ids:
            return Known()
        # Pending entries go only once their batch committed: taken first, an id missing
        # from `pending` is either new or in the store already, where the query then sees it.
        pending = self.in_flight.snapshot(ids)
        return Known(self.store.decided(ids), pending)

    def _label(self, record: Incoming, item, outcome: BatchOutcome, known: Known) -> None:
        owner = None
        if record.topic == self.config.topics.transactions:
            # Through the entity stages: the label is in its account's partition, ordered with
            # its transactions, and counts for that partition's state alone.
            owner = self.partitions.get(record.partition)
            if owner is None or not owner.accepts(record.offset):
                return
            owner.position = record.offset + 1
            if record.offset < owner.replay_until:  # applied and stored in an earlier life
                if not isinstance(item, PoisonMessageError):
                    owner.features.apply_label(item)
                outcome.offsets[(record.topic, record.partition)] = record.offset + 1
                return
        outcome.offsets[(record.topic, record.partition)] = record.offset + 1
        if isinstance(item, PoisonMessageError):
            self._dead_letter(record, item, outcome)
            return
        tx_id = item.transaction_id
        judged = self._judged(tx_id, known)
        if judged is None:
            # Stored anyway (it joins the transaction once that is decided); counted.
            self.metrics.labels_unknown.inc()
        item = _with_entity_keys(item, judged)
        outcome.writes.labels.append(LabelRecord.from_label(item))
        if owner is None:
            self._apply_label(item)
        elif owner.features.apply_label(item):
            owner.labels_changed = True
        self.breaker.record(False)

    def _judged(self, tx_id: str, known: Known) -> Transaction | None:
        """The judged transaction, in flight or stored (None: not seen yet)."""
        pending = known.pending.get(tx_id) or self.in_flight.get(tx_id)
        if pending is not None:
            return pending.transaction
        stored = known.stored.get(tx_id)
        if stored is None:
            return None
        try:
            return Transaction.model_validate_json(stored.transaction_json)
        except ValidationError:  # stored by an older schema: the label keeps its own keys
            return None

    def _apply_label(self, label: TransactionLabel) -> None:
        """Update the label-informed features of every owned partition (see `consumers.state`);
        a state a label changed is snapshotted with this batch."""
        for state in self.partitions.values():
            if state.features.apply_label(label):
                state.labels_changed = True

    def _transaction(self, record: Incoming, item, batch: PreparedBatch, known: Known) -> None:
        state = self.partitions.get(record.partition)
        if state is None or not state.accepts(record.offset):
            return  # revoked, or already applied (a re-fetch after a seek)
        outcome = batch.outcome
        state.position = record.offset + 1
        outcome.offsets[(record.topic, record.partition)] = record.offset + 1
        if record.offset < state.replay_until:
            self._replay(record, item, state, known, outcome)
        elif isinstance(item, PoisonMessageError):
            self._dead_letter(record, item, outcome)
        else:
            self._admit(record, item, state, batch, known)

    def _admit(self, record: Incoming, tx: Transaction, state: PartitionState,
               batch: PreparedBatch, known: Known) -> None:
        tx_id = tx.transaction_id
        pending = self.in_flight.get(tx_id) or known.pending.get(tx_id)
        stored = known.stored.get(tx_id)
        verdict = judge(tx, record, pending, stored)
        if verdict is Verdict.CONFLICTING:
            self.metrics.duplicates.labels(outcome="conflicting").inc()
            self._dead_letter(record, PoisonMessageError(
                REASON_CONFLICTING, f"transaction {tx_id} was already received with another "
                                    "content"), batch.outcome)
            return
        if verdict is not Verdict.NEW:
            self.metrics.duplicates.labels(outcome="republished").inc()
            self._republish(record, tx, state, batch, pending, stored, verdict)
            return
        if self._too_late(record, tx, state, batch.outcome):
            return
        payload = record.value.decode()  # what may raise goes before the state changes
        _, sequence, mask = state.features.update(tx, given_features(record))
        entry = Pending(tx, record.value, record.partition)
        self.in_flight.add(tx_id, entry)
        batch.scored.append(record)
        batch.transactions.append(tx)
        batch.payloads.append(payload)
        batch.entries.append(entry)
        batch.sequences.append(sequence)
        batch.masks.append(mask)
        self.breaker.record(False)

    def _republish(self, record: Incoming, tx: Transaction, state: PartitionState,
                   batch: PreparedBatch, pending: Pending | None, stored: DecisionRecord | None,
                   verdict: Verdict) -> None:
        """Publish the decision of a transaction decided before, exactly as it was."""
        if pending is not None:  # decided by the scoring thread, in order, before this batch
            batch.republish.append(pending)
        else:
            batch.outcome.outgoing.append(
                stored_decision_message(stored, self.config.topics.decisions))
        if verdict is Verdict.REREAD:  # its own record: the state has not seen it yet
            state.features.update(tx, given_features(record))
        self.breaker.record(False)

    def _too_late(self, record: Incoming, tx: Transaction, state: PartitionState,
                  outcome: BatchOutcome) -> bool:
        late_by = state.features.lateness_us(tx)
        if not late_by:
            return False
        policy = self.config.event_time
        self.metrics.lateness.observe(late_by / 1e6)
        if not policy.too_late(late_by):
            self.metrics.late_events.labels(outcome="accepted").inc()
            return False
        self.metrics.late_events.labels(outcome="too_late").inc()
        self._dead_letter(record, PoisonMessageError(
            REASON_TOO_LATE, f"{late_by / 1e6:.3f} s behind the latest event of account "
                             f"{tx.account_id} (allowed: {policy.allowed_lateness_s} s)"),
            outcome)
        return True

    def _replay(self, record: Incoming, item, state: PartitionState, known: Known,
                outcome: BatchOutcome) -> None:
        """A record decided in an earlier life: apply it to the state again if, and only if,
        it was applied then, that is if its decision came from this record (or from an
        unknown record: a decision stored before sources were). Its dead letter or duplicate
        decision was produced then."""
        stored = known.stored.get(getattr(item, "transaction_id", None))
        if stored is None or not (stored.source is None or is_source(stored, record)):
            return
        try:
            state.features.update(item, given_features(record))
        except Exception as error:  # noqa: BLE001 - dead-lettered in its first life
            log.error("replaying %s/%d/%d: %r", record.topic, record.partition, record.offset,
                      error)
            return
        outcome.replayed += 1

    def decide(self, batch: PreparedBatch) -> BatchOutcome:
        """Score the batch (one predictor call) and turn the scores into decisions."""
        if batch.scored:
            sequences = np.stack(batch.sequences)
            scores = self.score(sequences, np.stack(batch.masks))
            self._decide(batch, scores, sequences[:, -1, :])
        for entry in batch.republish:
            if entry.message is None:  # its batch was never decided: cannot happen in order
                log.error("no decision to publish again for %s", entry.transaction.transaction_id)
            else:
                batch.outcome.outgoing.append(entry.message)
        return batch.outcome

    def _dead_letter(self, record: Incoming, error: PoisonMessageError,
                     outcome: BatchOutcome, trace: bool = False) -> None:
        self._warnings.warning(error.reason, "dead-lettering %s/%d/%d: %s", record.topic,
                               record.partition, record.offset, error, exc_info=trace)
        outcome.outgoing.append(dead_letter(record, error, self.config.topics.dead_letter))
        self.metrics.dead_letters.labels(reason=error.reason).inc()
        self.breaker.record(True)

    def _decide(self, batch: PreparedBatch, result: ScoreBatch, features: np.ndarray) -> None:
        """Decisions from the scores and, when a rule set is in force, the rules (`features`:
        the scored transactions' feature rows [B, F])."""
        if not (np.isfinite(result.fraud_probability).all()
                and np.isfinite(result.anomaly_score).all()):
            raise PredictorError("predictor returned non-finite scores; batch not committed")
        outcome = batch.outcome
        decided = datetime.fromtimestamp(self.clock(), UTC)
        decided_at = decided.isoformat()
        version = result.model_version or self.config.model_version
        version_json = json.dumps(version)
        probabilities = result.fraud_probability.tolist()
        anomalies = result.anomaly_score.tolist()
        topics = self.config.topics
        ruled = self._apply_rules(batch, result, features, probabilities, anomalies)
        rows = zip(batch.scored, batch.transactions, batch.payloads, batch.entries, strict=True)
        for i, (record, tx, payload, entry) in enumerate(rows):
            codes = result.reason_codes[i] if i < len(result.reason_codes) else ()
            ruling = ruled[i] if ruled is not None else None
            decision = DecisionRecord(
                transaction_id=tx.transaction_id, account_id=tx.account_id,
                event_time=tx.timestamp, amount=tx.amount, fraud_probability=probabilities[i],
                anomaly_score=anomalies[i],
                decision=ruling.decision if ruling else result.decision[i],
                transaction_json=payload, reason_codes=",".join(codes),
                model_version=version, scored_at=decided,
                source=RecordSource(record.topic, record.partition, record.offset),
                rules_fired=",".join(ruling.fired) if ruling else "",
                rule_set_version=ruling.version if ruling else "")
            outcome.writes.decisions.append(decision)
            message = decision_message(decision, decided_at, codes, topics.decisions,
                                       version_json)
            entry.message = message
            outcome.outgoing.append(message)
            if decision.is_alert:
                outcome.outgoing.append(replace(message, topic=topics.alerts))
            outcome.event_times.append(tx.epoch_seconds)

    def _apply_rules(self, batch: PreparedBatch, result: ScoreBatch, features: np.ndarray,
                     probabilities: list[float], anomalies: list[float]
                     ) -> list[RuleOutcome] | None:
        """The rules' decisions for the batch, under one rule set and list version (None
        without a rule set). A due refresh of the file and the lists happens first."""
        if self.rules is None:
            return None
        self.rules.refresh_if_due()
        return decide_batch(self.rules.engine, batch.transactions, features, probabilities,
                            anomalies, result.decision)

    def _checkpoint(self, outcome: BatchOutcome) -> None:
        start = now = time.monotonic()
        topic = self.config.topics.transactions
        offsets = {p: o for (t, p), o in outcome.offsets.items() if t == topic}
        for partition, state in self.partitions.items():  # labels, no transaction: same place
            if state.labels_changed and partition not in offsets and state.position is not None:
                offsets[partition] = state.position
        for partition, next_offset in offsets.items():
            state = self.partitions.get(partition)
            if state is None:
                continue
            checkpoint = checkpoint_for(
                state, group_id=self.config.group_id, topic=topic, next_offset=next_offset,
                now=now, snapshot_interval_s=self.config.snapshot_interval_s)
            outcome.writes.checkpoints.append(checkpoint)
            # The next batch is fenced on this one's position: batches are persisted in
            # order, and a failed write re-synchronises the partition from the store.
            state.stored_offset = checkpoint.next_offset
            if checkpoint.snapshot is not None:
                state.snapshot_taken(now, self.config.snapshot_interval_s)
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
        self.in_flight.forget(d.transaction_id for d in outcome.writes.decisions)
        self._observe(outcome)

    def _observe(self, outcome: BatchOutcome) -> None:
        m = self.metrics
        now = self.clock()
        if outcome.event_times:
            observe_many(m.event_to_decision,
                         np.maximum(0.0, now - np.asarray(outcome.event_times)))
        fired = Counter(rule for d in outcome.writes.decisions if d.rules_fired
                        for rule in d.rules_fired.split(","))
        for rule, count in fired.items():
            m.rule_hits.labels(rule=rule).inc(count)
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


def _with_entity_keys(label: TransactionLabel, judged: Transaction | None) -> TransactionLabel:
    """`label` with the judged transaction's account, merchant and device where it lacks them
    (older producers send only the id): the label then counts for the same entities as in the
    batch features and the gateway, which look the keys up the same way."""
    if judged is None:
        return label
    keys = {key: getattr(judged, key) for key in ("account_id", "merchant_id", "device_id")
            if getattr(label, key) is None and getattr(judged, key) is not None}
    return label.model_copy(update=keys) if keys else label
