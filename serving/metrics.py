"""Every Prometheus metric of the serving unit.

The predictor registers on prometheus_client's default registry because KServe's ``/metrics``
endpoint (kserve.protocol.rest.server.metrics_handler) exports exactly that registry, next to
KServe's own ``request_*_seconds`` histograms. The gateway gets a registry of its own per app.
Metrics are created by the constructors below (in `main`), never at import time.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
#: Alert raised to its first verdict: from a minute to a week (analysts work in shifts).
_VERDICT_BUCKETS = (30, 60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 172_800, 604_800)


class PredictorMetrics:
    """Metrics of the KServe predictor."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.request_seconds = Histogram(
            "fraud_predictor_request_duration_seconds",
            "Time to score one inference request (start of preprocess to end of postprocess).",
            ["protocol"], buckets=_LATENCY_BUCKETS, registry=registry)
        self.forward_seconds = Histogram(
            "fraud_predictor_forward_duration_seconds",
            "Time of one (possibly merged) forward pass through both models.",
            buckets=_LATENCY_BUCKETS, registry=registry)
        self.request_batch = Histogram(
            "fraud_predictor_request_batch_size", "Sequences per inference request.",
            buckets=_BATCH_BUCKETS, registry=registry)
        self.forward_batch = Histogram(
            "fraud_predictor_forward_batch_size",
            "Sequences per forward pass (requests merged by the micro-batcher).",
            buckets=_BATCH_BUCKETS, registry=registry)
        self.decisions = Counter(
            "fraud_predictor_decisions_total", "Decisions returned, by outcome.", ["decision"],
            registry=registry)
        self.invalid_requests = Counter(
            "fraud_predictor_invalid_requests_total", "Requests refused with HTTP 400.",
            registry=registry)
        self.model_info = Info(
            "fraud_predictor_model", "Model versions currently served.", registry=registry)
        self.model_swaps = Counter(
            "fraud_predictor_model_swaps_total",
            "Champion changes seen by the watcher, by outcome (swapped|failed|refused).",
            ["outcome"], registry=registry)
        self.model_loaded = Gauge(
            "fraud_predictor_model_loaded_timestamp_seconds",
            "Unix time at which the served models were installed.", registry=registry)


class GatewayMetrics:
    """Metrics of the HTTP gateway."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.request_seconds = Histogram(
            "fraud_gateway_request_duration_seconds", "HTTP request latency by route.",
            ["method", "route", "status"], buckets=_LATENCY_BUCKETS, registry=reg)
        self.produced = Counter(
            "fraud_gateway_transactions_produced_total",
            "Transactions acknowledged by Kafka.", registry=reg)
        self.kafka_errors = Counter(
            "fraud_gateway_kafka_errors_total", "Produce attempts that got no acknowledgement.",
            registry=reg)
        self.auth_failures = Counter(
            "fraud_gateway_auth_failures_total", "Requests refused for a missing or wrong API key.",
            registry=reg)
        self.decisions = Counter(
            "fraud_gateway_score_decisions_total", "Synchronous /v1/score decisions by outcome.",
            ["decision"], registry=reg)
        self.feedback = Counter(
            "fraud_gateway_feedback_total", "Analyst feedback received, by verdict.", ["verdict"],
            registry=reg)
        self.refused = Counter(
            "fraud_gateway_requests_refused_total",
            "Requests refused before any work, by reason (too_large, body_timeout, timeout, "
            "auth_rate_limited).", ["reason"], registry=reg)
        # Rule ids are bounded by the rule set in force (tens): a safe label.
        self.rule_hits = Counter(
            "fraud_rule_hits_total", "/v1/score decisions in which a rule fired, by rule id.",
            ["rule"], registry=reg)
        self.rule_set_reloads = Counter(
            "fraud_rule_set_reloads_total",
            "Rule-set file changes: loaded (in force now) or refused (invalid; the running one "
            "stays).", ["outcome"], registry=reg)
        self.label_outcomes = Counter(
            "fraud_gateway_label_outcomes_total",
            "Labels appended to the history, by outcome (new, unchanged, changed).",
            ["outcome"], registry=reg)
        self.alerts_worked = Counter(
            "fraud_analyst_alerts_worked_total",
            "Alerts given their first verdict by an analyst (confirmed_fraud or legitimate); "
            "per hour: increase(...[1h]); share confirmed: the confirmed_fraud part of it.",
            ["verdict"], registry=reg)
        for verdict in ("confirmed_fraud", "legitimate"):  # 0 before the first, not absent
            self.alerts_worked.labels(verdict)
        self.time_to_verdict = Histogram(
            "fraud_analyst_time_to_verdict_seconds",
            "From an alert's creation in the store to its first verdict.",
            buckets=_VERDICT_BUCKETS, registry=reg)

    def observe_verdict(self, outcome: str, verdict: str, raised_at: datetime,
                        labelled_at: datetime) -> None:
        """Count an analyst's label: only the first verdict on an alert is work done on it (a
        repeat or a change of mind is not another alert worked)."""
        if outcome != "new":
            return
        self.alerts_worked.labels(verdict).inc()
        self.time_to_verdict.observe(max(0.0, (labelled_at - raised_at).total_seconds()))
