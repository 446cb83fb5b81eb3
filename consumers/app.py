"""The consumer process: wiring (settings -> store, predictor, Kafka, notifier) and the loop.

One iteration: poll (whatever is buffered: batches grow with the load, so a quiet stream is not
held back) -> `StreamProcessor.ingest` (state, features) -> when the scoring thread is free,
`take` a batch and hand it to the `ConsumerLoop`: one predictor call and the decisions, then the
decisions/alerts/dead letters go to the producer and one database transaction writes decisions,
alerts, notification outbox and partition checkpoints, committed only once the broker has
acknowledged every produced record (the round trip overlaps the inserts) -> commit the Kafka
offsets of written batches -> wake the notifier. By default the loop waits for each batch
(least CPU); `consumer.overlap_scoring` polls and ingests the next batch while the predictor
scores one and writes it while the predictor scores the next; `consumer.pipelined` also moves
the writes to a thread of their own. SIGTERM/SIGINT finish the batches in flight, then exit 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from consumers.exceptions import PredictorError, ShutdownRequested
from consumers.kafka_io import KafkaSink, KafkaSource
from consumers.metrics import ConsumerMetrics
from consumers.notifications import Dispatcher, NotificationPlanner, senders_for
from consumers.pipeline import ConsumerLoop, InFlight
from consumers.predictor import PredictorClient, ScoreFn, spec_from_metadata, timed, with_backoff
from consumers.processor import BatchOutcome, ProcessorConfig, StreamProcessor
from consumers.settings import ConsumerSettings
from consumers.state import open_store
from fraudops.features import EventTimePolicy, FeatureSpec, OnlineFeatureState
from fraudops.features.spec import VELOCITY_ENTITIES
from fraudops.rules import RulesError, RuleSource
from fraudops.store import StaleCheckpointError, Store

log = logging.getLogger(__name__)
_LAG_INTERVAL_S = 5.0
_IDLE_POLL_S = 0.1
_BUSY_POLL_S = 0.02
#: With `overlap_scoring` a scored batch is written by the polling thread: poll shorter.
_OVERLAP_POLL_S = 0.005
EXIT_OK, EXIT_FATAL = 0, 1


@dataclass
class ModelContract:
    """What the consumer must know about the served model (its feature spec, sequence length
    and versions; `fraudops.served_model.ModelDescription` is the whole description)."""

    spec: FeatureSpec
    seq_len: int
    version: str = ""


@dataclass
class ConsumerApp:
    """A running consumer. `score`/`model` may be injected (tests); else the predictor is used."""

    settings: ConsumerSettings
    score: ScoreFn | None = None
    model: ModelContract | None = None
    store: Store | None = None
    metrics: ConsumerMetrics = field(default_factory=ConsumerMetrics)
    stop: threading.Event = field(default_factory=threading.Event)
    #: Garbage-collector tuning, owned by the process (`fraudops consume`), not by library use.
    heap: HeapFreezer | None = None

    def run(self) -> int:
        """Consume until `stop` is set; returns the process exit code."""
        s = self.settings
        store = self.store or open_store(s.database.resolved_url(s.home))
        if store is None:
            return EXIT_FATAL
        client = None
        if self.score is None or self.model is None:
            client = PredictorClient(s.consumer.predictor_url, s.consumer.predictor_timeout_s)
        try:
            processor = self._processor(store, client)
        except (ShutdownRequested, PredictorError, RulesError) as error:
            if client is not None:
                client.close()
            if isinstance(error, ShutdownRequested):
                return EXIT_OK
            log.error("cannot use the %s: %s",
                      "rule set" if isinstance(error, RulesError) else "predictor", error)
            return EXIT_FATAL
        return self._consume(processor, store, client)

    def _processor(self, store: Store, client: PredictorClient | None) -> StreamProcessor:
        s = self.settings
        model, score = self.model, self.score
        if model is None:
            metadata = self._backoff(client.metadata)()
            spec, info = spec_from_metadata(metadata)
            version = f"{info.sequence_model_version or '?'}/{info.autoencoder_model_version or '?'}"
            model = ModelContract(spec, info.seq_len, version)
            log.info("predictor serves K=%d F=%d (%s), models %s", info.seq_len, info.n_features,
                     spec.fingerprint, version)
        if score is None:
            score = self._backoff(client.score)
        c = s.consumer
        topics, owned = s.kafka.topics, tuple(VELOCITY_ENTITIES)
        if c.entity_stages:  # merchant and device features come attached (`consumers.stages`)
            topics, owned = topics.model_copy(update={"transactions": topics.enriched}), ("account",)
        config = ProcessorConfig(group_id=c.group_id, topics=topics,
                                 max_message_bytes=c.max_message_bytes,
                                 snapshot_interval_s=c.snapshot_interval_s,
                                 model_version=model.version,
                                 # with stages the router judges lateness, in `transactions`
                                 event_time=EventTimePolicy(
                                     float("inf") if c.entity_stages else c.allowed_lateness_s),
                                 breaker_window=c.dead_letter_breaker_window,
                                 breaker_share=c.dead_letter_breaker_share)
        return StreamProcessor(
            config, store=store, score=timed(score, self.metrics),
            new_state=lambda: OnlineFeatureState(model.spec, model.seq_len, owned),
            planner=NotificationPlanner(s.notify, store), metrics=self.metrics,
            rules=self._rules(store, model.spec))

    def _rules(self, store: Store, spec: FeatureSpec) -> RuleSource | None:
        """The rule set of `rules_path` with the store's lists (None when no path is set);
        raises `RulesError` for a rule set that cannot be used."""
        c = self.settings.consumer
        if not c.rules_path:
            return None
        reloads = self.metrics.rule_set_reloads
        source = RuleSource(c.rules_path, store, feature_names=spec.names,
                            refresh_s=c.rules_refresh_s,
                            on_reload=lambda outcome, _: reloads.labels(outcome=outcome).inc())
        reloads.labels(outcome="loaded").inc()
        log.info("rule set %s in force (%d rules) from %s", source.engine.version,
                 len(source.engine.rules.rules), c.rules_path)
        return source

    def _backoff(self, call):
        c = self.settings.consumer
        return with_backoff(call, self.stop, initial_s=c.backoff_initial_s,
                            max_s=c.backoff_max_s, metrics=self.metrics)

    def _consume(self, processor: StreamProcessor, store: Store,
                 client: PredictorClient | None) -> int:
        s = self.settings
        topics = processor.config.topics
        dispatcher = Dispatcher(store, senders_for(s.notify), max_attempts=s.notify.max_attempts,
                                metrics=self.metrics)
        sink = KafkaSink(s.kafka, s.consumer.producer_linger_ms)
        labels = s.consumer.consume_labels and not s.consumer.entity_stages  # else: in `enriched`
        subscribed = [topics.transactions] + ([topics.labels] if labels else [])

        def revoked(topic: str, partitions: list[int]) -> None:
            if topic == topics.transactions:
                loop.on_revoked(partitions)

        source = KafkaSource(
            s.kafka, s.consumer, subscribed,
            on_assigned=lambda t, ps: processor.assign(ps) if t == topics.transactions else {},
            on_revoked=revoked)
        loop = Loop(source, sink, processor, dispatcher, self.stop, s, self.metrics, self.heap)
        dispatcher.start()
        try:
            return loop.run()
        finally:
            dispatcher.stop()
            source.close()
            sink.close()
            if client is not None:
                client.close()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT ask for a graceful stop (call from the main thread)."""
        stop_on_signals(self.stop)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`: the batch in flight finishes, then the loop stops (call
    from the main thread). The consumer and the entity stages stop the same way."""
    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the batch in flight, then stopping", signum)
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class _Exit(Exception):
    """Leave the loop with an exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class HeapFreezer:
    """Keeps Python's cyclic garbage collector from walking the per-account state.

    The state is hundreds of thousands of long-lived objects. Each full collection walked all of
    them and paused the loop for 50-200 ms, several times a minute at 1,000 tx/s: that was the
    p99 latency. Every `freeze_s` the objects alive move to the permanent generation
    (`gc.freeze`), so collections only see young ones. Every `full_s` one full collection runs
    over everything, because cycles among frozen objects that died since would otherwise stay.
    """

    freeze_s: float = 10.0
    full_s: float = 900.0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._next_freeze, self._next_full = self.started, self.started + self.full_s

    def due(self, now: float) -> bool:
        return now >= self._next_freeze or now >= self._next_full

    def run(self, now: float) -> None:
        if now >= self._next_full:
            gc.unfreeze()
            gc.collect()
            self._next_full = now + self.full_s
        else:
            gc.collect(1)  # young garbage goes first, so only live objects are frozen
        gc.freeze()
        self._next_freeze = now + self.freeze_s


@dataclass
class Loop:
    """Polls and ingests on this thread; scoring and writing run in the `ConsumerLoop`."""

    source: KafkaSource
    sink: KafkaSink
    processor: StreamProcessor
    dispatcher: Dispatcher
    stop: threading.Event
    settings: ConsumerSettings
    metrics: ConsumerMetrics
    heap: HeapFreezer | None = None
    _next_lag: float = 0.0
    #: Every position made durable so far: committed to Kafka synchronously on the way out.
    _positions: dict = field(default_factory=dict)
    _paused: bool = False

    def __post_init__(self) -> None:
        c = self.settings.consumer
        self._overlap = c.overlap_scoring and not c.pipelined
        self.pipeline = ConsumerLoop(self.processor, self.sink, self.metrics,
                                     on_written=self._written, write_inline=self._overlap)

    def run(self) -> int:
        try:
            while not self.stop.is_set():
                self._settle()
                self._step()
            # Finish what is in flight; records ingested but not handed over stay uncommitted.
            self.pipeline.drain()
            self._settle(final=True)
            log.info("stopped")
            return EXIT_OK
        except _Exit as exit_:
            return exit_.code
        finally:
            self.pipeline.close()

    def handle(self, records: list) -> None:
        """Ingest, score and make durable one micro-batch, waiting for the result."""
        self.processor.ingest(records)
        self._check_dead_letters()
        self.pipeline.submit(self.processor.take())
        self.pipeline.drain()
        self._settle()

    def on_revoked(self, partitions: list[int]) -> None:
        """Before partitions go: finish the batches in flight, drop the ones not handed over."""
        self.pipeline.drain()
        self._settle()
        dropped = self.processor.discard_pending()
        self.processor.revoke(partitions)
        self._resync(dropped)  # partitions kept (cooperative rebalancing) restart from the store

    def _step(self) -> None:
        c = self.settings.consumer
        room = c.batch_size - self.processor.pending
        if room <= 0 and not self.pipeline.scorer_idle:
            # A full batch waits for the scorer: sleep until it is free rather than poll (each
            # poll while paused took one record: 15 us of CPU per transaction, spent in the
            # GIL the scoring and writing threads need).
            with self.metrics.stage("wait"):
                self.pipeline.wait_scorer_idle(_BUSY_POLL_S)
        self._flow_control(paused=room <= 0)
        # While the pipeline works, poll briefly: the scorer may be idle again any moment (and
        # with overlap a scored batch waits for this thread to write it).
        idle_s = (_OVERLAP_POLL_S if self._overlap else _BUSY_POLL_S) if self.pipeline.busy \
            else _IDLE_POLL_S
        with self.metrics.stage("poll"):
            records = self.source.poll_batch(max(room, 1), c.batch_max_wait_ms / 1000,
                                             self.stop, idle_s=idle_s)
        self._update_lag()
        if records:
            for topic, count in Counter(r.topic for r in records).items():
                self.metrics.consumed.labels(topic=topic).inc(count)
            with self.metrics.stage("ingest"):
                self.processor.ingest(records)
            self._check_dead_letters()
        if self._overlap:
            self._overlap_step()
        elif self.processor.pending and self.pipeline.scorer_idle:
            with self.metrics.stage("take"):
                batch = self.processor.take()
            self.pipeline.submit(batch)
            if not c.pipelined:
                self.pipeline.drain()
        now = time.monotonic()
        if self.heap is not None and self.heap.due(now):
            with self.metrics.stage("gc"):
                self.heap.run(now)

    def _overlap_step(self) -> None:
        """Once the batch in flight is scored: hand the next one to the predictor, then write
        the scored one while it works."""
        if not self.pipeline.scorer_idle:
            return
        if self.processor.pending:
            with self.metrics.stage("take"):
                batch = self.processor.take()
            self.pipeline.submit(batch)
        self.pipeline.write_scored()

    def _check_dead_letters(self) -> None:
        """Stop when most messages go to the dead-letter topic: a broken producer, not poison.
        The batch being built is not committed, so a restart reads it again."""
        breaker = self.processor.breaker
        if breaker.tripped:
            self.metrics.errors.labels(kind="dead_letter_breaker").inc()
            log.error("stopping: %s. The producer looks broken; its messages are on the "
                      "dead-letter topic with their reasons (headers dlq.reason, dlq.detail). "
                      "The batch in progress is not committed: fix the producer, or raise "
                      "FRAUDOPS_CONSUMER__DEAD_LETTER_BREAKER_SHARE, then restart.",
                      breaker.describe())
            raise _Exit(EXIT_FATAL)

    def _flow_control(self, *, paused: bool) -> None:
        """Stop fetching while a full batch waits (the predictor is slow or away)."""
        if paused != self._paused:
            self.source.pause_all() if paused else self.source.resume_all()
            self._paused = paused

    def _settle(self, *, final: bool = False) -> None:
        """Commit the positions of written batches; deal with a failed one."""
        for inflight in self.pipeline.completed():
            try:
                outcome = inflight.outcome()
            except StaleCheckpointError as error:
                self._fenced(inflight, error)
                return
            except ShutdownRequested:
                log.info("stopped while the predictor was away; the batch stays uncommitted")
                raise _Exit(EXIT_OK) from None
            except PredictorError as error:
                self.metrics.errors.labels(kind="predictor").inc()
                log.error("predictor refused a batch (not committed): %s", error)
                raise _Exit(EXIT_FATAL) from None
            self._positions.update(outcome.offsets)
            with self.metrics.stage("commit"):
                committed = self.source.commit(outcome.offsets, wait=False)
            if not committed:
                self.metrics.errors.labels(kind="commit").inc()
        if final:
            self.source.commit(self._positions, wait=True)

    def _fenced(self, failed: InFlight, error: StaleCheckpointError) -> None:
        """Another member took a partition over: rewind everything not yet durable."""
        self.metrics.errors.labels(kind="stale_checkpoint").inc()
        log.warning("lost a partition to another consumer, re-synchronising: %s", error)
        records = list(failed.batch.records)
        self.pipeline.drain()
        for skipped in self.pipeline.completed():  # every later batch was skipped
            records.extend(skipped.batch.records)
        records.extend(self.processor.discard_pending())
        self.pipeline.reset()
        self._resync(records)

    def _written(self, outcome: BatchOutcome) -> None:
        if outcome.writes.notifications:
            self.dispatcher.wake()

    def _resync(self, records: list) -> None:
        """After lost records: restore their transaction partitions from the store and
        rewind every other partition they came from (labels) to its first record."""
        topic = self.processor.config.topics.transactions
        firsts: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            firsts[key] = min(firsts.get(key, record.offset), record.offset)
        owned = [p for (t, p) in firsts if t == topic and p in self.processor.partitions]
        for partition, offset in self.processor.resync(owned).items():
            if offset is not None:
                self.source.seek(topic, partition, offset)
        for (other, partition), offset in firsts.items():
            if other != topic:
                self.source.seek(other, partition, offset)

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + _LAG_INTERVAL_S
        for (topic, partition), lag in self.source.lag().items():
            self.metrics.lag.labels(topic=topic, partition=str(partition)).set(lag)
