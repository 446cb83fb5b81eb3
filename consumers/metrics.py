"""All Prometheus metrics of the consumer unit (one module, `fraud_` prefix, base units)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)
#: Finer where the latency objective lies (tens of milliseconds).
_EVENT_BUCKETS = (0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
                  0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: From sub-second reordering to a day-old offline upload.
_LATENESS_BUCKETS = (0.01, 0.1, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0,
                     86_400.0, 7 * 86_400.0)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe every value into `histogram` (one without labels, or one labelled child): the
    buckets `observe` would count, one at a time, counted per bucket at once.

    `observe` costs about 1.2 µs a value, once per transaction on the consumer's hot path; this
    costs a few microseconds per batch. It reaches into the histogram's bucket values, which is
    why prometheus-client is pinned: a test compares the exposition with `observe`'s."""
    amounts = np.asarray(values, dtype=np.float64)
    if not len(amounts):
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds
    # observe counts a value in the first bucket whose bound is >= it (NaN in none)
    index = np.searchsorted(bounds, amounts, side="left")
    counts = np.bincount(index[index < len(bounds)], minlength=len(bounds))
    with np.errstate(over="ignore"):  # to inf, as Python's float additions go
        histogram._sum.inc(float(amounts.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)


class ConsumerMetrics:
    """The consumer's metrics on their own registry (a fresh one per instance keeps tests apart)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("fraud_consumer_messages_consumed_total",
                                "Messages read from Kafka.", ["topic"], registry=r)
        self.scored = Counter("fraud_consumer_transactions_scored_total",
                              "Transactions scored and decided.", ["decision"], registry=r)
        self.alerts = Counter("fraud_consumer_alerts_total",
                              "Alerts raised (review or block).", ["decision"], registry=r)
        self.dead_letters = Counter("fraud_consumer_dead_letters_total",
                                    "Messages sent to the dead-letter topic.", ["reason"],
                                    registry=r)
        self.errors = Counter("fraud_consumer_errors_total",
                              "Recoverable errors (predictor, commit, notification).", ["kind"],
                              registry=r)
        self.replayed = Counter("fraud_consumer_replayed_total",
                                "Events re-applied to restored state without re-deciding.",
                                registry=r)
        self.notifications = Counter("fraud_consumer_notifications_total",
                                     "Notification outcomes.", ["channel", "status"], registry=r)
        self.labels = Counter("fraud_consumer_labels_total", "Analyst labels stored.", registry=r)
        self.labels_unknown = Counter(
            "fraud_consumer_labels_unknown_transaction_total",
            "Labels for a transaction not decided (yet): stored, joined once it is.", registry=r)
        self.late_events = Counter(
            "fraud_consumer_late_events_total",
            "Transactions older than their account's latest event: accepted (features clamped "
            "to the watermark) or too_late (dead-lettered).", ["outcome"], registry=r)
        self.lateness = Histogram(
            "fraud_consumer_event_lateness_seconds",
            "How far late transactions are behind their account's latest event.",
            buckets=_LATENESS_BUCKETS, registry=r)
        self.duplicates = Counter(
            "fraud_consumer_duplicates_total",
            "Transaction ids received again: republished (same content, the stored decision "
            "published again) or conflicting (another content, dead-lettered).", ["outcome"],
            registry=r)
        self.dead_letter_ratio = Gauge(
            "fraud_consumer_dead_letter_window_ratio",
            "Share of the circuit breaker's window of messages that went to the dead-letter "
            "topic (the consumer stops above its limit).", registry=r)
        self.event_to_decision = Histogram(
            "fraud_consumer_event_to_decision_seconds",
            "From the transaction's event time to its decision being durable.",
            buckets=_EVENT_BUCKETS, registry=r)
        self.batch_size = Histogram("fraud_consumer_batch_size", "Transactions per micro-batch.",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.predictor_latency = Histogram("fraud_consumer_predictor_request_seconds",
                                           "Predictor call latency (one micro-batch).",
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram(
            "fraud_consumer_stage_seconds",
            "Time per micro-batch in each stage (poll, process incl. predictor, produce, "
            "persist, commit).", ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
        # CPU beside wall clock: a stage that waits (the broker's acks, the predictor) shows
        # little CPU; one that competes for the GIL or the cores shows wall >> CPU.
        self.stage_cpu = Counter(
            "fraud_consumer_stage_cpu_seconds",
            "CPU seconds of the thread running each stage (time.thread_time).", ["stage"],
            registry=r)
        # Rule ids are bounded by the rule set in force (tens), so they make a safe label.
        self.rule_hits = Counter(
            "fraud_rule_hits_total", "Decisions in which a rule fired, by rule id.", ["rule"],
            registry=r)
        self.rule_set_reloads = Counter(
            "fraud_rule_set_reloads_total",
            "Rule-set file changes: loaded (in force now) or refused (invalid; the running one "
            "stays).", ["outcome"], registry=r)
        self.lag = Gauge("fraud_consumer_lag_messages",
                         "Approximate lag (broker end offsets are approximate on some brokers).",
                         ["topic", "partition"], registry=r)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a block as one micro-batch's `name` stage (wall clock and the thread's CPU)."""
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.stage_latency.labels(stage=name).observe(time.perf_counter() - start)
            self.stage_cpu.labels(stage=name).inc(time.thread_time() - cpu)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (a daemon thread)."""
        start_http_server(port, registry=self.registry)


#: A stage's batch steps take milliseconds; a snapshot of a large state up to seconds.
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                  10.0, 30.0)


class StageMetrics:
    """An entity stage's metrics (`consumers.stages`, ``fraudops consume --stage``): their own
    `fraud_stage_` family with a `stage` label, so the scoring consumer's figures (throughput,
    lag, error rate) do not count the stages' traffic again."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter("fraud_stage_records_consumed_total",
                                "Records an entity stage read, by input topic.",
                                ["stage", "topic"], registry=r)
        self.records = Counter(
            "fraud_stage_records_total",
            "Records an entity stage processed, by outcome: applied (a transaction applied to "
            "the stage's entity state; the router: admitted), passed (no key of the stage's "
            "entity: passed on unchanged), repeat (a transaction id applied before: passed on, "
            "not applied again), label (a label passed on, applied to its entity where it names "
            "one), replayed (re-applied to a restored state after a restart, not produced), "
            "dead_letter.", ["stage", "outcome"], registry=r)
        self.produced = Counter("fraud_stage_records_produced_total",
                                "Records an entity stage produced to its output topic "
                                "(acknowledged by the broker, positions stored).", ["stage"],
                                registry=r)
        self.dead_letters = Counter("fraud_stage_dead_letters_total",
                                    "Records an entity stage sent to the dead-letter topic.",
                                    ["stage", "reason"], registry=r)
        self.errors = Counter("fraud_stage_errors_total",
                              "Recoverable errors of an entity stage (stale_checkpoint: a "
                              "partition lost to another member).", ["stage", "kind"],
                              registry=r)
        self.batch_size = Histogram("fraud_stage_batch_size", "Records per stage batch.",
                                    ["stage"], buckets=_BATCH_BUCKETS, registry=r)
        self.step_latency = Histogram(
            "fraud_stage_batch_seconds",
            "Time per batch in each step of an entity stage: process (parse, state, features), "
            "persist (the broker's acknowledgements, then positions and snapshots in one "
            "database transaction), commit (offsets to Kafka, for lag tooling).",
            ["stage", "step"], buckets=_STAGE_BUCKETS, registry=r)
        self.lag = Gauge("fraud_stage_lag_messages",
                         "An entity stage's lag per assigned partition of its input topics "
                         "(the broker's end offset minus the position).",
                         ["stage", "topic", "partition"], registry=r)
        self.partitions = Gauge("fraud_stage_partitions_assigned",
                                "Input partitions an entity stage member owns.", ["stage"],
                                registry=r)
        self.entities = Gauge("fraud_stage_entities",
                              "Entities whose state a stage member holds (merchants, devices; "
                              "the router: accounts with a watermark).", ["stage"], registry=r)
        self.remembered_ids = Gauge("fraud_stage_remembered_ids",
                                    "Transaction ids a stage member remembers to refuse repeats "
                                    "(24 hours of event time).", ["stage"], registry=r)
        self.snapshot_latency = Histogram(
            "fraud_stage_snapshot_seconds",
            "Time to take one partition's state snapshot (the changes since the previous one); "
            "storing it is part of the persist step.", ["stage"], buckets=_STAGE_BUCKETS,
            registry=r)

    @contextmanager
    def step(self, stage: str, name: str) -> Iterator[None]:
        """Time a block as one batch's `name` step of `stage`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.step_latency.labels(stage=stage, step=name).observe(time.perf_counter() - start)

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (a daemon thread)."""
        start_http_server(port, registry=self.registry)
