"""One drift check, end to end: windows, comparison, report, metrics, policy, retraining.

    job = DriftJob(settings, store, registry=MlflowClient(uri, registry_uri=uri), launcher=build_launcher(...))
    outcome = job.check()

Dependencies come in through the constructor (the CLI builds them from the settings), so tests
hand in a real store, a real MLflow registry and a recording launcher.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fraudops.features import FeatureSpec
from fraudops.models import Scorer, load_scorer
from fraudops.store import Store
from monitoring import reports
from monitoring.decisions import SKIPPED, DecisionEntry, DecisionLog
from monitoring.drift_detection import Comparison, DriftResult, compare
from monitoring.exceptions import DriftConfigError, EmptyWindowError, RetrainLaunchError
from monitoring.features import check_columns
from monitoring.metrics import DriftMetrics
from monitoring.policy import PolicyDecision, WindowSignal, decide
from monitoring.reference import Champion, find_champion, reference_data, reference_window
from monitoring.settings import MonitoringSettings
from monitoring.trigger import Launch, Launcher, NoLauncher, RetrainRequest
from monitoring.window import ScoredWindow, load_store_window, window_bounds

log = logging.getLogger(__name__)


@dataclass
class CheckOutcome:
    """What one check did (printed by the CLI, logged as one decisions-log line)."""

    status: str  # checked | skipped
    report_id: str | None = None
    report_location: str | None = None
    drift_share: float | None = None
    drifted_features: list[str] = field(default_factory=list)
    decision: PolicyDecision | None = None
    launch: Launch | None = None
    launch_error: str | None = None
    detail: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class DriftJob:
    """Runs drift checks against the champion; keeps its reference between checks."""

    def __init__(self, settings: MonitoringSettings, store: Store, registry: Any,
                 launcher: Launcher | None = None, metrics: DriftMetrics | None = None,
                 scorer_loader: Callable[[str, str], Scorer] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.launcher = launcher or NoLauncher()
        self.metrics = metrics or DriftMetrics()
        self.scorer_loader = scorer_loader or self._load_from_registry
        self.clock = clock
        self.reports_dir = settings.drift.resolved_reports_dir(settings.home)
        self.log = DecisionLog(self.reports_dir)
        self._reference: tuple[str, ScoredWindow, FeatureSpec, Champion] | None = None

    def check(self, end: datetime | None = None) -> CheckOutcome:
        """Check the window ending at `end` (default: the newest scored event)."""
        started, timings = time.perf_counter(), {}
        champion, reference, spec = self._timed(timings, "reference", self.reference)
        try:
            current = self._timed(timings, "current_window", self._current, end)
        except EmptyWindowError as error:
            return self._skip(str(error), started)
        if current.rows < self.settings.drift.min_rows:
            return self._skip(f"{current.rows} scored rows in the window (< min_rows "
                              f"{self.settings.drift.min_rows})", started)
        comparison = self._timed(timings, "compare", compare, reference, current, spec,
                                 self.settings.drift, self.settings.retrain,
                                 _champion_dict(champion), champion.holdout_metrics())
        outcome = self._decide(comparison, champion)
        self._timed(timings, "report", self._record, comparison, outcome)
        outcome.seconds = time.perf_counter() - started
        outcome.timings = timings
        self._publish(comparison, outcome)
        return outcome

    @staticmethod
    def _timed(timings: dict[str, float], name: str, function, *args):
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            timings[name] = round(time.perf_counter() - started, 3)

    # -- the two sides ------------------------------------------------------------------------

    def reference(self) -> tuple[Champion, ScoredWindow, FeatureSpec]:
        """The champion and its scored reference window (rebuilt when the champion changes)."""
        names = self.settings.mlflow.models
        champion = find_champion(self.registry, names.sequence, names.champion_alias)
        if self._reference is not None and self._reference[0] == champion.version:
            return self._reference[3], self._reference[1], self._reference[2]
        scorer = self.scorer_loader(f"models:/{names.sequence}/{champion.version}",
                                    f"models:/{names.autoencoder}@{names.champion_alias}")
        spec = FeatureSpec.from_dict(scorer.feature_spec)
        try:
            check_columns(spec, self.settings.drift.numeric_features,
                          self.settings.drift.categorical_features)
        except ValueError as error:
            raise DriftConfigError(str(error)) from error
        data, data_end, source = reference_data(champion, self.registry,
                                                self.settings.drift.reference_path)
        drift = self.settings.drift
        window = reference_window(data, scorer, spec, drift.reference_span, drift.lookback,
                                  data_end)
        log.info("reference: %d rows of %s for %s v%s", window.rows, source, champion.name,
                 champion.version)
        self._reference = (champion.version, window, spec, champion)
        return champion, window, spec

    def _load_from_registry(self, sequence_uri: str, autoencoder_uri: str) -> Scorer:
        """Download both model versions through the job's registry client, load them locally."""
        import mlflow

        tracking_uri = self.settings.mlflow.resolved_tracking_uri(self.settings.home)
        scratch = tempfile.mkdtemp(prefix="fraudops-drift-models-")
        local = []
        for i, uri in enumerate((sequence_uri, autoencoder_uri)):
            name, version = self._registered_version(uri)
            source = self.registry.get_model_version_download_uri(name, version)
            local.append(mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=f"{scratch}/{i}", tracking_uri=tracking_uri))
        return load_scorer(*local, device="cpu")

    def _registered_version(self, uri: str) -> tuple[str, str]:
        """(name, version) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
        ref = uri.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return name, str(self.registry.get_model_version_by_alias(name, alias).version)
        name, _, version = ref.partition("/")
        return name, version

    def _current(self, end: datetime | None) -> ScoredWindow:
        drift = self.settings.drift
        start, end = window_bounds(self.store, drift.window, end, drift.window_max_rows,
                                   drift.lookback)
        return load_store_window(self.store, start, end, drift.lookback, drift.event_labels)

    # -- policy and retraining ----------------------------------------------------------------

    def _decide(self, comparison: Comparison, champion: Champion) -> CheckOutcome:
        result = comparison.result
        outcome = CheckOutcome("checked", result.report_id, drift_share=result.drift_share,
                               drifted_features=result.drifted_features)
        signal = _signal(comparison, self.settings.retrain.quality_metric)
        outcome.decision = decide(signal, self.log.history(), self.clock(), self.settings.retrain)
        if outcome.decision.triggered and not self.settings.drift.trigger_retraining:
            outcome.detail = "retraining disabled (FRAUDOPS_DRIFT__TRIGGER_RETRAINING=false)"
        elif outcome.decision.triggered:
            self._launch(outcome, result, champion)
        log.info("drift %.2f (%s): %s - %s", result.drift_share,
                 ", ".join(result.drifted_features) or "none", outcome.decision.decision,
                 outcome.decision.detail)
        return outcome

    def _launch(self, outcome: CheckOutcome, result: DriftResult, champion: Champion) -> None:
        retrain = self.settings.retrain
        context = {"window_start": result.current["start"], "window_end": result.current["end"],
                   "trigger_reason": outcome.decision.reason,
                   "drift_report_id": result.report_id, "champion_version": champion.version}
        params = {k: v for k, v in context.items() if k in retrain.context_params}
        request = RetrainRequest(f"retrain-{outcome.decision.reason}-{result.report_id}",
                                 {**params, **retrain.extra_params})
        try:
            outcome.launch = self.launcher.launch(request)
        except RetrainLaunchError as error:
            outcome.launch_error = str(error)
            self.metrics.launch_failures.inc()
            log.error("retraining decided but not started: %s", error)

    # -- outputs --------------------------------------------------------------------------------

    def _record(self, comparison: Comparison, outcome: CheckOutcome) -> None:
        entry = self._log_entry(comparison, outcome)
        outcome.report_location = reports.save(
            comparison, entry.model_dump(mode="json", exclude={"report_location"}),
            self.reports_dir)
        if self.settings.drift.log_to_mlflow:
            self._log_mlflow(comparison, outcome.report_location)
        entry.report_location = outcome.report_location
        self.log.append(entry)

    def _log_mlflow(self, comparison: Comparison, location: str) -> None:
        home, mlflow_settings = self.settings.home, self.settings.mlflow
        try:
            reports.log_to_mlflow(comparison, location,
                                  mlflow_settings.resolved_tracking_uri(home),
                                  f"{mlflow_settings.experiment}-monitoring",
                                  mlflow_settings.resolved_artifact_location(home) + "/monitoring")
        except Exception as error:  # noqa: BLE001 - MLflow down must not lose the check
            log.warning("drift check not logged to MLflow: %s", error)

    def _log_entry(self, comparison: Comparison, outcome: CheckOutcome) -> DecisionEntry:
        result, decision = comparison.result, outcome.decision
        return DecisionEntry(
            decided_at=self.clock(), report_id=result.report_id,
            window_start=result.current["start"], window_end=result.current["end"],
            rows=result.current["rows"], drift_share=result.drift_share,
            drifted_features=result.drifted_features,
            score_drift={c.column: c.drifted for c in result.scores},
            quality={k: result.quality.get(k) for k in ("evaluated", "labelled")},
            champion=result.champion, **(decision.to_dict() if decision else {}),
            triggered=bool(outcome.launch), launch=outcome.launch,
            launch_error=outcome.launch_error, note=outcome.detail)

    def _skip(self, reason: str, started: float) -> CheckOutcome:
        log.warning("drift check skipped: %s", reason)
        self.log.append(DecisionEntry(decided_at=self.clock(), decision=SKIPPED,
                                      reason="too_few_rows", detail=reason))
        self.metrics.checks.labels("skipped").inc()
        self.metrics.decisions.labels("skipped", "too_few_rows").inc()
        self._push()
        return CheckOutcome("skipped", detail=reason, seconds=time.perf_counter() - started)

    def _publish(self, comparison: Comparison, outcome: CheckOutcome) -> None:
        update_metrics(self.metrics, comparison, outcome, self.settings.retrain.quality_metric)
        self._push()

    def _push(self) -> None:
        drift = self.settings.drift
        try:
            if drift.pushgateway_url:
                self.metrics.push(drift.pushgateway_url)
            if drift.metrics_textfile:
                self.metrics.write_textfile(drift.metrics_textfile)
        except OSError as error:  # metrics are best effort; the report and log are written
            log.warning("drift metrics not published: %s", error)


def _signal(comparison: Comparison, quality_metric: str) -> WindowSignal:
    result = comparison.result
    quality = result.quality if result.quality.get("evaluated") else {}
    return WindowSignal(
        window_end=result.current["end"], drift_share=result.drift_share,
        score_drifted=any(c.drifted for c in result.scores if c.column == "fraud_probability"),
        quality_current=(quality.get("current") or {}).get(quality_metric),
        quality_reference=(quality.get("reference") or {}).get(quality_metric))


def _champion_dict(champion: Champion) -> dict:
    return {"name": champion.name, "version": champion.version, "run_id": champion.run_id}


def update_metrics(metrics: DriftMetrics, comparison: Comparison, outcome: CheckOutcome,
                   quality_metric: str) -> None:
    """Set the gauges from a finished check and count its decision."""
    result = comparison.result
    metrics.drift_share.set(result.drift_share)
    for column in result.features:
        metrics.feature_score.labels(column.column).set(column.value)
        metrics.feature_drifted.labels(column.column).set(float(column.drifted))
    for column in result.scores:
        metrics.score_drift.labels(column.column).set(column.value)
        metrics.score_drifted.labels(column.column).set(float(column.drifted))
    for side in ("reference", "current"):
        value = (result.quality.get(side) or {}).get(quality_metric)
        if value is not None:
            metrics.quality.labels(quality_metric, side).set(value)
    metrics.window_rows.set(result.current["rows"])
    metrics.window_labelled.set(result.current["labelled"])
    metrics.last_check.set(time.time())
    metrics.check_seconds.set(outcome.seconds)
    metrics.checks.labels("checked").inc()
    if outcome.decision is not None:
        metrics.decisions.labels(outcome.decision.decision, outcome.decision.reason).inc()
    metrics.triggered.set(1.0 if outcome.launch else 0.0)
    if outcome.launch:
        metrics.last_trigger.set(time.time())
