"""Every Prometheus metric of the monitoring unit (one registry per job instance).

A one-shot check (the CronJob) pushes them to a Pushgateway or writes a node-exporter
textfile; `fraudops drift watch` serves them on its own ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    push_to_gateway,
    start_http_server,
    write_to_textfile,
)

JOB_NAME = "fraudops-drift"


class DriftMetrics:
    """Drift figures of the last check and retraining decisions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.drift_share = Gauge("fraud_drift_share",
                                 "Share of drift features that drifted in the last check.",
                                 registry=r)
        self.feature_score = Gauge("fraud_drift_feature_score",
                                   "Drift statistic per feature (distance or p-value).",
                                   ["feature"], registry=r)
        self.feature_drifted = Gauge("fraud_drift_feature_drifted",
                                     "1 when the feature drifted in the last check.",
                                     ["feature"], registry=r)
        self.score_drift = Gauge("fraud_drift_prediction_score",
                                 "Drift statistic of a model output (fraud_probability, "
                                 "anomaly_score).", ["output"], registry=r)
        self.score_drifted = Gauge("fraud_drift_prediction_drifted",
                                   "1 when the model output's distribution drifted.",
                                   ["output"], registry=r)
        self.quality = Gauge("fraud_drift_quality",
                             "Champion quality on labelled rows (side: reference|current).",
                             ["metric", "side"], registry=r)
        self.window_rows = Gauge("fraud_drift_window_rows",
                                 "Scored transactions in the last checked window.", registry=r)
        self.window_labelled = Gauge("fraud_drift_window_labelled_rows",
                                     "Labelled transactions in the last checked window.",
                                     registry=r)
        self.last_check = Gauge("fraud_drift_last_check_timestamp_seconds",
                                "Unix time of the last completed drift check.", registry=r)
        self.check_seconds = Gauge("fraud_drift_check_duration_seconds",
                                   "Duration of the last drift check.", registry=r)
        self.checks = Counter("fraud_drift_checks_total", "Drift checks by outcome "
                              "(checked|skipped|failed).", ["outcome"], registry=r)
        self.decisions = Counter("fraud_retrain_decisions_total",
                                 "Retraining policy decisions by outcome and reason.",
                                 ["decision", "reason"], registry=r)
        self.triggered = Gauge("fraud_retrain_triggered",
                               "1 when the last check started retraining.", registry=r)
        self.last_trigger = Gauge("fraud_retrain_last_trigger_timestamp_seconds",
                                  "Unix time retraining was last started.", registry=r)
        self.launch_failures = Counter("fraud_retrain_launch_failures_total",
                                       "Retraining runs that failed to start.", registry=r)

    def push(self, gateway: str) -> None:
        """Push to a Pushgateway (one group per job: the latest check replaces the previous)."""
        push_to_gateway(gateway, job=JOB_NAME, registry=self.registry)

    def write_textfile(self, path: str) -> None:
        """Write a node-exporter textfile (atomically)."""
        write_to_textfile(path, self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose /metrics on `port` (a daemon thread)."""
        start_http_server(port, addr=addr, registry=self.registry)
