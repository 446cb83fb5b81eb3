"""Entity stages: merchant- and device-wide state that is right across partitions and replicas.

`transactions` is keyed by account, so a consumer sees only its partitions' share of a
merchant's or device's traffic. With ``FRAUDOPS_CONSUMER__ENTITY_STAGES=true`` the stream goes
through the broker re-keyed by each entity, Kafka Streams' repartitioning pattern::

    transactions, labels --router--> by_merchant --merchant--> by_device --device--> enriched
        (by account)                 (by merchant)             (by device)          (by account)

Each stage is a consumer group (`StageApp`, ``fraudops consume --stage NAME``) and owns the
state of the entities of its partitions, exactly as the scoring consumer owns its accounts'
(`consumers.state`: per-partition `OnlineFeatureState`, snapshot and position in the store,
fenced). The merchant stage computes the merchant's velocity and label-informed features with
the same code as the single consumer (`OnlineFeatureState.entity_update`), attaches them to the
record as a header and re-keys it by device; the device stage does the same for the device and
re-keys by account; the scoring consumer reads `enriched` and uses the attached values
(`OnlineFeatureState.update(tx, given)`). Labels travel the same path, so each stage sees an
entity's labels in a defined order with its transactions, and applies those of its entity. A
record without the entity's key passes a stage unchanged (keyed by its account).

At least once, effects idempotent: a stage produces a batch's records, waits for the broker's
acknowledgements, then writes its positions (and snapshot, when due) in one database
transaction. After a crash it restores its snapshot, replays the records up to its stored
position without producing them, and processes the rest again: deterministic, so it produces
the same records with the same values, and the next stage refuses the repeats by transaction id
(`OnlineFeatureState.entity_update`, within `SEEN_HORIZON_US`); the scoring consumer judges
them as redeliveries (`consumers.idempotency`). Malformed records go to the dead-letter topic
with their reason, as in the consumer.

Each stage process serves its own metrics (`consumers.metrics.StageMetrics`, ``fraud_stage_*``
by stage: outcomes, batch steps, lag per partition, state size, snapshot time).

Lateness is judged once, by the router, in each account's order in `transactions` (the
event-time policy measures it against the account's watermark, `OnlineFeatureState.route`): a
too-late transaction goes to the dead-letter topic there and counts nowhere, as in batch
(`admit_stream`). Re-keying reorders an account's events by the skew between the paths they
take (milliseconds in a live stream, more while a stage catches up on a backlog), so the
scoring consumer does not judge lateness again: it applies what arrives, in arrival order,
under the clamp of the event-time policy, and the batch reference is computed in that order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from consumers.app import stop_on_signals
from consumers.deadletters import DeadLetterBreaker, RateLimitedLog
from consumers.exceptions import PoisonMessageError
from consumers.kafka_io import KafkaSink, KafkaSource
from consumers.messages import (
    FLOATS,
    KIND_HEADER,
    LABEL_KIND,
    REASON_TOO_LATE,
    Incoming,
    Outgoing,
    dead_letter,
    feature_header,
    is_label,
    parse_label,
    parse_transaction,
    unexpected_error,
)
from consumers.metrics import StageMetrics
from consumers.settings import ConsumerSettings
from consumers.state import PartitionState, checkpoint_for, open_store, restore_partitions
from fraudops.features import EventTimePolicy, OnlineFeatureState, build_spec
from fraudops.features.spec import MICROS
from fraudops.schema import Transaction, TransactionLabel
from fraudops.settings import TopicSettings
from fraudops.store import (
    BatchWrite,
    CheckpointRecord,
    StaleCheckpointError,
    Store,
)

log = logging.getLogger(__name__)

#: The stages in stream order.
STAGES = ("router", "merchant", "device")
EXIT_OK, EXIT_FATAL = 0, 1
#: Seconds between two readings of the lag (the broker's cached end offsets) into the metrics.
_LAG_INTERVAL_S = 2.0


def stage_topics(stage: str, topics: TopicSettings) -> tuple[list[str], str, str | None, str]:
    """A stage's input topics, its output topic, its entity (None: the router) and the key of
    its output (the next stage's entity)."""
    if stage == "router":
        return [topics.transactions, topics.labels], topics.by_merchant, None, "merchant_id"
    if stage == "merchant":
        return [topics.by_merchant], topics.by_device, "merchant", "device_id"
    if stage == "device":
        return [topics.by_device], topics.enriched, "device", "account_id"
    raise ValueError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")


@dataclass(frozen=True)
class StageConfig:
    """What a stage needs to know besides its collaborators."""

    stage: str
    group_id: str
    topics: TopicSettings = field(default_factory=TopicSettings)
    max_message_bytes: int = 64 * 1024
    snapshot_interval_s: float = 10.0
    #: The router admits transactions as the consumer does (the scoring consumer, reading the
    #: re-keyed stream, no longer measures lateness: see the module docstring).
    event_time: EventTimePolicy = field(default_factory=EventTimePolicy)
    breaker_window: int = 1000
    breaker_share: float = 0.5

    def __post_init__(self) -> None:
        inputs, output, entity, next_key = stage_topics(self.stage, self.topics)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "entity", entity)
        object.__setattr__(self, "next_key", next_key)


@dataclass
class StageOutcome:
    """One batch's records to produce and the positions (and snapshots) to store after."""

    outgoing: list[Outgoing] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    #: (topic, partition) -> next offset (committed to Kafka once durable, for lag tooling).
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


class StageProcessor:
    """Re-keys records, computing and attaching its entity's features; owns per-partition
    state like the scoring consumer (`consumers.state`). Plain Python, no broker."""

    def __init__(self, config: StageConfig, *, store: Store,
                 new_state: Callable[[], OnlineFeatureState] | None = None,
                 metrics: StageMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.store = store
        owned = (config.entity,) if config.entity else ()
        self.new_state = new_state or (lambda: OnlineFeatureState(build_spec(), 1, owned))
        self.metrics = metrics or StageMetrics()
        self.clock = clock
        self.partitions: dict[tuple[str, int], PartitionState] = {}
        self.breaker = DeadLetterBreaker(config.breaker_window, config.breaker_share)
        self._warnings = RateLimitedLog(log)

    # -- assignment (as `StreamProcessor.assign`) ---------------------------------------------

    def assign(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        """Restore the partitions' state; returns where to seek each."""
        restored = restore_partitions(self.store, self.config.group_id, topic, partitions,
                                      self.new_state)
        seeks = {}
        for partition, (state, seek) in restored.items():
            self.partitions[(topic, partition)] = state
            seeks[partition] = seek
        return seeks

    def revoke(self, topic: str, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.partitions.pop((topic, partition), None)

    def resync(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """Drop and restore partitions from the store (after a `StaleCheckpointError`)."""
        seeks = {}
        for topic in {t for t, _ in keys}:
            partitions = [p for t, p in keys if t == topic]
            self.revoke(topic, partitions)
            seeks.update({(topic, p): o for p, o in self.assign(topic, partitions).items()})
        return seeks

    # -- processing ---------------------------------------------------------------------------

    def process(self, records: Sequence[Incoming]) -> StageOutcome:
        """Apply records to the state; the records to produce and the checkpoints to store."""
        outcome = StageOutcome()
        counts: Counter[str] = Counter()
        for record in records:
            key = (record.topic, record.partition)
            state = self.partitions.get(key)
            if state is None or not state.accepts(record.offset):
                continue  # revoked, or already applied (a re-fetch after a seek)
            state.position = record.offset + 1
            outcome.offsets[key] = record.offset + 1
            replay = record.offset < state.replay_until
            try:
                out, what = self._record(record, state)
            except PoisonMessageError as error:
                what, out = "dead_letter", None if replay else self._dead_letter(record, error)
            except Exception as error:  # noqa: BLE001 - one message must not stop the stream
                what = "dead_letter"
                out = None if replay else self._dead_letter(record, unexpected_error(error),
                                                           trace=True)
            else:
                self.breaker.record(False)
            counts["replayed" if replay else what] += 1
            if out is not None and not replay:
                outcome.outgoing.append(out)
        self._checkpoint(outcome)
        self._warnings.flush()
        self._observe(counts)
        return outcome

    def _observe(self, counts: Counter[str]) -> None:
        """A batch's outcomes and the state's size into the metrics (per batch, not per
        record: the stages' cost is per record)."""
        stage, m = self.config.stage, self.metrics
        for what, n in counts.items():
            m.records.labels(stage=stage, outcome=what).inc(n)
        states = [p.features for p in self.partitions.values()]
        entities = (sum(len(f.velocity[self.config.entity]) for f in states) if self.config.entity
                    else sum(len(f.watermarks) for f in states))
        m.entities.labels(stage=stage).set(entities)
        m.remembered_ids.labels(stage=stage).set(sum(len(f.seen.ids) for f in states))
        m.partitions.labels(stage=stage).set(len(self.partitions))

    def _record(self, record: Incoming, state: PartitionState) -> tuple[Outgoing, str]:
        """The record to produce and the outcome to count (see `StageMetrics.records`)."""
        limit, entity = self.config.max_message_bytes, self.config.entity
        headers = record.headers
        if is_label(record, self.config.topics.labels):
            label = parse_label(record.value, limit)
            if entity is None:
                headers = ((KIND_HEADER, LABEL_KIND),)
                keyed = label_keys_from_store(label, self.store)
                if keyed is not label:
                    return (self._out(record, keyed, headers, keyed.model_dump_json().encode()),
                            "label")
            elif state.features.apply_label(label):
                state.labels_changed = True
            return self._out(record, label, headers), "label"
        tx = parse_transaction(record.value, limit)
        what = "applied"
        if entity is None:
            verdict, late_by = state.features.route(tx, self.config.event_time.allowed_lateness_s
                                                    * MICROS)
            if verdict == REASON_TOO_LATE:
                raise PoisonMessageError(REASON_TOO_LATE, (
                    f"{late_by / 1e6:.3f} s behind the latest event of account {tx.account_id} "
                    f"(allowed: {self.config.event_time.allowed_lateness_s} s)"))
            if verdict == "duplicate":
                what = "repeat"
        else:
            values = state.features.entity_update(tx, entity)
            if values is not None:
                headers = (*headers, (feature_header(entity), values.astype(FLOATS).tobytes()))
            else:
                what = "passed" if getattr(tx, f"{entity}_id") is None else "repeat"
        return self._out(record, tx, headers), what

    def _out(self, record: Incoming, item: Transaction | TransactionLabel, headers: tuple,
             value: bytes | None = None) -> Outgoing:
        key = getattr(item, self.config.next_key) or item.account_id
        return Outgoing(self.config.output, key.encode() if key else record.key,
                        value or record.value, headers)

    def _dead_letter(self, record: Incoming, error: PoisonMessageError,
                     trace: bool = False) -> Outgoing:
        self._warnings.warning(error.reason, "dead-lettering %s/%d/%d: %s", record.topic,
                               record.partition, record.offset, error, exc_info=trace)
        self.metrics.dead_letters.labels(stage=self.config.stage, reason=error.reason).inc()
        self.breaker.record(True)
        return dead_letter(record, error, self.config.topics.dead_letter)

    def _checkpoint(self, outcome: StageOutcome) -> None:
        now = self.clock()
        for (topic, partition), next_offset in outcome.offsets.items():
            state = self.partitions[(topic, partition)]
            start = time.perf_counter()
            checkpoint = checkpoint_for(
                state, group_id=self.config.group_id, topic=topic, next_offset=next_offset,
                now=now, snapshot_interval_s=self.config.snapshot_interval_s)
            outcome.checkpoints.append(checkpoint)
            state.stored_offset = checkpoint.next_offset
            if checkpoint.snapshot is not None:
                state.snapshot_taken(now, self.config.snapshot_interval_s)
                self.metrics.snapshot_latency.labels(stage=self.config.stage).observe(
                    time.perf_counter() - start)

    def persist(self, outcome: StageOutcome,
                before_commit: Callable[[], None] | None = None) -> None:
        """Store the positions (and snapshots) in one transaction; `before_commit` (waiting for
        the produced records' acknowledgements) runs inside it. Raises
        `StaleCheckpointError` when another member took a partition over."""
        self.store.write_batch(BatchWrite(checkpoints=outcome.checkpoints),
                               before_commit=before_commit)


@dataclass
class StageApp:
    """A running stage: polls, processes, produces, then stores its positions; synchronous
    (one batch at a time), which keeps a stage's order and fencing simple."""

    settings: ConsumerSettings
    stage: str
    store: Store | None = None
    metrics: StageMetrics = field(default_factory=StageMetrics)
    stop: threading.Event = field(default_factory=threading.Event)
    _next_lag: float = 0.0
    _lag_keys: set = field(default_factory=set)

    def config(self) -> StageConfig:
        c = self.settings.consumer
        return StageConfig(stage=self.stage, group_id=f"{c.group_id}-{self.stage}",
                           topics=self.settings.kafka.topics,
                           max_message_bytes=c.max_message_bytes,
                           snapshot_interval_s=c.snapshot_interval_s,
                           event_time=EventTimePolicy(c.allowed_lateness_s),
                           breaker_window=c.dead_letter_breaker_window,
                           breaker_share=c.dead_letter_breaker_share)

    def run(self) -> int:
        """Process until `stop` is set; returns the process exit code."""
        s = self.settings
        store = self.store or open_store(s.database.resolved_url(s.home))
        if store is None:
            return EXIT_FATAL
        processor = StageProcessor(self.config(), store=store, metrics=self.metrics)
        sink = KafkaSink(s.kafka, s.consumer.producer_linger_ms)
        source = KafkaSource(s.kafka, s.consumer, processor.config.inputs,
                             on_assigned=processor.assign, on_revoked=processor.revoke,
                             group_id=processor.config.group_id)
        log.info("stage %s: %s -> %s", self.stage, ", ".join(processor.config.inputs),
                 processor.config.output)
        try:
            while not self.stop.is_set():
                records = source.poll_batch(s.consumer.batch_size,
                                            s.consumer.batch_max_wait_ms / 1000, self.stop)
                self._update_lag(source)
                if records and not self._handle(processor, source, sink, records):
                    return EXIT_FATAL
            return EXIT_OK
        finally:
            source.close()
            sink.close()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the batch in progress, then stop (main thread only)."""
        stop_on_signals(self.stop)

    def _update_lag(self, source: KafkaSource) -> None:
        """The lag of each assigned partition (every `_LAG_INTERVAL_S`, idle or not; as soon
        as the first fetch tells the end offsets); a partition no longer assigned leaves the
        metric."""
        now = time.monotonic()
        if now < self._next_lag:
            return
        lags = {(topic, str(partition)): lag for (topic, partition), lag in source.lag().items()}
        if lags:
            self._next_lag = now + _LAG_INTERVAL_S
        for topic, partition in self._lag_keys - lags.keys():
            self.metrics.lag.remove(self.stage, topic, partition)
        for (topic, partition), lag in lags.items():
            self.metrics.lag.labels(stage=self.stage, topic=topic, partition=partition).set(lag)
        self._lag_keys = set(lags)

    def _handle(self, processor: StageProcessor, source: KafkaSource, sink: KafkaSink,
                records: list[Incoming]) -> bool:
        m, stage = self.metrics, self.stage
        for topic in {r.topic for r in records}:
            m.consumed.labels(stage=stage, topic=topic).inc(
                sum(r.topic == topic for r in records))
        m.batch_size.labels(stage=stage).observe(len(records))
        with m.step(stage, "process"):
            outcome = processor.process(records)
        if processor.breaker.tripped:
            log.error("stopping: %s. The upstream producer looks broken (reasons on the "
                      "dead-letter topic); the batch is not stored.", processor.breaker.describe())
            return False
        try:
            with m.step(stage, "persist"):
                sent = sink.send(outcome.outgoing)
                processor.persist(outcome, before_commit=sent.wait)
        except StaleCheckpointError as error:
            m.errors.labels(stage=stage, kind="stale_checkpoint").inc()
            log.warning("lost a partition to another member, re-synchronising: %s", error)
            keys = {(r.topic, r.partition) for r in records}
            for (topic, partition), offset in processor.resync(
                    [k for k in keys if k in processor.partitions]).items():
                if offset is not None:
                    source.seek(topic, partition, offset)
            return True
        produced = sum(o.topic == processor.config.output for o in outcome.outgoing)
        m.produced.labels(stage=stage).inc(produced)
        with m.step(stage, "commit"):
            source.commit(outcome.offsets)
        return True


def label_keys_from_store(label: TransactionLabel, store: Store) -> TransactionLabel:
    """`label` with its decided transaction's entity keys when it carries none (older
    producers send only the id), as the consumer does (`consumers.processor`): it then reaches
    the merchant's and the device's stage. A transaction not decided yet: unchanged."""
    if label.account_id or label.merchant_id or label.device_id:
        return label
    stored = store.decided([label.transaction_id]).get(label.transaction_id)
    if stored is None:
        return label
    try:
        judged = Transaction.model_validate_json(stored.transaction_json)
    except ValidationError:
        return label
    return label.model_copy(update={"account_id": judged.account_id,
                                    "merchant_id": judged.merchant_id,
                                    "device_id": judged.device_id})
