"""Settings of the monitoring unit, read once in the CLI's command and passed down.

Environment names follow the platform convention, e.g. ``FRAUDOPS_DRIFT__WINDOW=P1D``,
``FRAUDOPS_DRIFT__REPORTS_DIR=s3://bucket/drift``, ``FRAUDOPS_RETRAIN__LAUNCHER=kfp``,
``FRAUDOPS_KFP__HOST=http://ml-pipeline.kubeflow:8888``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from fraudops.settings import CommonSettings, DatabaseSettings, KfpSettings, MLflowSettings

#: Interpretable drift features: numeric columns of the shared feature implementation whose
#: distribution does not depend on how much history the job loads (velocity counts vary with
#: the weekday's volume and raise false alarms, so they are left out by default).
DEFAULT_NUMERIC_FEATURES = ("amount_log", "hour_sin", "hour_cos", "account_amount_z",
                            "account_amount_diff", "account_max_24h_log", "account_gap_log")
#: Categorical drift features: one-hot groups decoded back to one column, and 0/1 flags.
DEFAULT_CATEGORICAL_FEATURES = ("channel", "category", "account_new_merchant",
                                "account_new_device", "account_new_country")


class DriftSettings(BaseModel):
    """The drift job (`fraudops drift check`)."""

    #: Length of the current window of scored transactions (ISO 8601 ``P1D`` or seconds).
    window: timedelta = Field(default=timedelta(days=1), gt=timedelta(0))
    #: Latest rows to keep at most (0 = no limit): bounds a window during a traffic spike.
    window_max_rows: int = Field(default=0, ge=0)
    #: History loaded before each side's window so per-account features see the same past.
    lookback: timedelta = Field(default=timedelta(days=7), ge=timedelta(0))
    #: Length of the reference: the last part of the champion's training window.
    reference_span: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    #: Fallback reference data set (Parquet/CSV in the platform layout) when the champion's
    #: training run did not log where its data came from.
    reference_path: str = ""
    #: Fewer scored rows than this and the window is skipped (logged, no decision on drift).
    min_rows: int = Field(default=200, ge=10)
    #: Rows per side handed to Evidently (uniform sample): keeps a 100k-row window well under a
    #: minute; distribution distances barely move above ~20k rows.
    sample_rows: int = Field(default=20_000, ge=100)
    numeric_features: tuple[str, ...] = DEFAULT_NUMERIC_FEATURES
    categorical_features: tuple[str, ...] = DEFAULT_CATEGORICAL_FEATURES
    #: Per-column drift threshold (None keeps Evidently's default for the chosen method).
    column_threshold: float | None = Field(default=None, gt=0)
    #: ``<dir>/<report_id>/report.html`` + ``report.json``; a local path or ``s3://...``
    #: (needs s3fs). Empty means ``<home>/drift-reports`` (what the gateway lists by default).
    reports_dir: str = ""
    log_to_mlflow: bool = True
    #: Pushgateway address (``http://host:9091``); empty disables pushing.
    pushgateway_url: str = ""
    #: node-exporter textfile (``.../fraudops_drift.prom``); empty disables it.
    metrics_textfile: str = ""
    #: Apply the retraining policy and start retraining when it says so.
    trigger_retraining: bool = True
    #: Also trust labels carried by the events themselves (synthetic replays carry ground
    #: truth); otherwise only analyst labels (the store's labels table) count as arrived.
    event_labels: bool = False
    seed: int = 0

    def resolved_reports_dir(self, home: Path) -> str:
        return self.reports_dir or str(home / "drift-reports")


class RetrainPolicySettings(BaseModel):
    """When a drift check starts retraining, and how."""

    #: A window counts as drifted when this share of the drift features drifted.
    drift_share_threshold: float = Field(default=0.25, gt=0, le=1)
    #: ... in this many consecutive checked windows.
    consecutive_windows: int = Field(default=2, ge=1)
    #: Also count a drifted fraud-probability distribution as a drifted window.
    score_drift_triggers: bool = False
    #: Metric compared between the champion's reference and the labelled current window. Recall at
    #: a fixed false-positive rate by default: unlike AUPRC it does not rise just because a window
    #: holds more fraud (a new fraud pattern raised AUPRC while recall fell).
    quality_metric: str = "recall_at_1pct_fpr"
    #: Relative drop of `quality_metric` that triggers (0.2 = 20% below the reference).
    max_quality_drop: float = Field(default=0.2, gt=0, lt=1)
    #: Labels needed before quality counts (and fraud labels among them).
    min_labelled: int = Field(default=200, ge=1)
    min_labelled_fraud: int = Field(default=10, ge=1)
    #: After the first alarmed window, wait until the checked windows end this much later (event
    #: time) before retraining, so that its data holds the new regime (0: retrain at once).
    new_regime_wait: timedelta = Field(default=timedelta(0), ge=timedelta(0))
    #: No new run within this long after the last triggered one.
    cooldown: timedelta = Field(default=timedelta(hours=6), ge=timedelta(0))
    #: At most this many triggered runs per rolling 24 hours.
    max_per_day: int = Field(default=2, ge=1)
    #: How retraining starts: ``kfp`` (a run of the uploaded pipeline in Kubeflow), ``command``
    #: (a process, e.g. the local kfp runner), ``entrypoint`` (a Python callable), ``none``;
    #: ``auto`` is ``kfp`` when FRAUDOPS_KFP__HOST is set (a cluster), else ``command``.
    launcher: Literal["auto", "kfp", "command", "entrypoint", "none"] = "auto"
    #: argv of the ``command`` launcher; the request's parameters follow as ``--param k=v``.
    command: tuple[str, ...] = ("fraudops", "pipeline", "run", "--local")
    #: ``module:function`` of the ``entrypoint`` launcher, called with the parameters as kwargs.
    entrypoint: str = ""
    #: Seconds the ``command`` launcher may run (0 = start it and do not wait).
    wait_timeout_s: float = Field(default=0.0, ge=0)
    #: Fixed parameters added to every retraining request (e.g. the data set to grow).
    extra_params: dict[str, str] = Field(default_factory=dict)
    #: Which facts of the check become parameters of the run (the pipeline refuses parameters
    #: it does not declare): any of window_start, window_end, trigger_reason, drift_report_id,
    #: champion_version. All of them are in the run name and the decisions log anyway.
    context_params: tuple[str, ...] = ("window_end",)


class MonitoringSettings(CommonSettings):
    """Everything `fraudops drift ...` reads."""

    drift: DriftSettings = DriftSettings()
    retrain: RetrainPolicySettings = RetrainPolicySettings()
    kfp: KfpSettings = KfpSettings()
    mlflow: MLflowSettings = MLflowSettings()
    database: DatabaseSettings = DatabaseSettings()
