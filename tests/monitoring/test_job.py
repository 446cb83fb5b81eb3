"""The drift job against a real store, a real MLflow registry and generated data.

Retraining launches go to a recording launcher here (the launchers have their own tests); the
end-to-end test with the training entry point is in test_retraining.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from monitoring.decisions import DecisionLog
from monitoring.job import DriftJob
from monitoring.metrics import DriftMetrics
from monitoring.trigger import Launch

pytestmark = pytest.mark.integration


class RecordingLauncher:
    """Records retraining requests instead of starting a pipeline."""

    def __init__(self) -> None:
        self.requests = []

    def launch(self, request):
        self.requests.append(request)
        return Launch("recording", run_id=f"run-{len(self.requests)}")


def _job(platform, settings, launcher=None):
    return DriftJob(settings, platform.store, MlflowClient(platform.tracking_uri, registry_uri=platform.tracking_uri),
                    launcher or RecordingLauncher(), DriftMetrics())


def test_drift_detected_twice_in_a_row_triggers_retraining(drifted_platform, settings_for, day):
    launcher = RecordingLauncher()
    job = _job(drifted_platform, settings_for(drifted_platform), launcher)
    first = job.check(day(drifted_platform, 27))
    assert first.decision.drifted, first.drifted_features
    assert "amount_log" in first.drifted_features
    assert first.decision.decision == "hold" and first.decision.reason == "awaiting_confirmation"
    second = job.check(day(drifted_platform, 29))
    assert second.decision.decision == "trigger" and second.decision.reason == "drift"
    assert len(launcher.requests) == 1
    request = launcher.requests[0]
    assert request.params == {"window_end": second.report_location and
                              json.loads((Path(second.report_location) / "report.json")
                                         .read_text())["summary"]["current"]["end"]}
    assert request.run_name == f"retrain-drift-{second.report_id}"
    # After a run the count starts again (and the cool-down holds further runs).
    third = job.check(day(drifted_platform, 30))
    assert third.decision.drifted and third.decision.decision == "hold"
    assert len(launcher.requests) == 1


def test_same_distribution_never_triggers(stable_platform, settings_for, day):
    launcher = RecordingLauncher()
    job = _job(stable_platform, settings_for(stable_platform, log_to_mlflow=False), launcher)
    shares = []
    for n in (23, 27, 31, 35):
        outcome = job.check(day(stable_platform, n))
        shares.append(outcome.drift_share)
        assert outcome.decision.decision == "hold", (n, outcome.drifted_features)
    assert launcher.requests == []
    assert max(shares) < job.settings.retrain.drift_share_threshold, shares


def test_report_files_decision_log_and_metrics(drifted_platform, settings_for, day):
    settings = settings_for(drifted_platform)
    job = _job(drifted_platform, settings)
    outcome = job.check(day(drifted_platform, 30))
    folder = Path(outcome.report_location)
    assert folder.parent == drifted_platform.home / "drift-reports"
    assert (folder / "report.html").stat().st_size > 10_000
    body = json.loads((folder / "report.json").read_text())
    assert body["summary"]["report_id"] == outcome.report_id == folder.name
    assert body["summary"]["drift_share"] == pytest.approx(outcome.drift_share)
    # The keys the gateway lists (serving/gateway/reports.py).
    assert body["drift_share"] == pytest.approx(outcome.drift_share)
    assert body["drifted_columns"] == outcome.drifted_features and "amount_log" in body[
        "drifted_columns"]
    assert body["dataset_drift"] is True and body["created_at"].startswith("20")
    assert {c["column"] for c in body["summary"]["features"]} == set(
        settings.drift.numeric_features + settings.drift.categorical_features)
    assert body["decision"]["decision"] in ("hold", "trigger")
    last = json.loads((folder.parent / "decisions.jsonl").read_text().splitlines()[-1])
    assert last["report_id"] == outcome.report_id and last["reason"] == outcome.decision.reason
    registry = job.metrics.registry
    assert registry.get_sample_value("fraud_drift_share") == pytest.approx(outcome.drift_share)
    assert registry.get_sample_value("fraud_drift_feature_drifted",
                                     {"feature": "amount_log"}) == 1.0
    runs = MlflowClient(drifted_platform.tracking_uri,
                              registry_uri=drifted_platform.tracking_uri).search_runs(
        [MlflowClient(drifted_platform.tracking_uri,
                              registry_uri=drifted_platform.tracking_uri)
         .get_experiment_by_name("fraudops-monitoring").experiment_id],
        filter_string=f"tags.`fraudops.report_id` = '{outcome.report_id}'")
    assert len(runs) == 1 and runs[0].data.metrics["drift_share"] == pytest.approx(
        outcome.drift_share)


def test_gateway_lists_the_report(drifted_platform, settings_for, day):
    from serving.gateway.reports import DriftReports

    outcome = _job(drifted_platform, settings_for(drifted_platform, log_to_mlflow=False)).check(
        day(drifted_platform, 28))
    listed = {r.report_id: r for r in DriftReports(drifted_platform.home / "drift-reports").list()}
    assert listed[outcome.report_id].html and listed[outcome.report_id].dataset_drift is True
    assert listed[outcome.report_id].drift_share == pytest.approx(outcome.drift_share)


def test_unknown_drift_feature_is_a_clear_error(drifted_platform, settings_for, day):
    from monitoring.exceptions import DriftConfigError

    job = _job(drifted_platform, settings_for(drifted_platform, numeric_features=("amount_cubed",)))
    with pytest.raises(DriftConfigError, match="amount_cubed"):
        job.check(day(drifted_platform, 30))


def test_window_with_too_few_rows_is_skipped_and_logged(drifted_platform, settings_for, day):
    job = _job(drifted_platform, settings_for(drifted_platform, min_rows=10_000))
    outcome = job.check(day(drifted_platform, 30))
    assert outcome.status == "skipped" and "min_rows" in outcome.detail
    assert job.metrics.registry.get_sample_value("fraud_drift_checks_total",
                                                 {"outcome": "skipped"}) == 1.0


def outcome_window_end(outcome: dict) -> str:
    report = Path(outcome["report_location"]) / "report.json"
    return json.loads(report.read_text())["summary"]["current"]["end"]


@pytest.mark.slow
def test_cli_check_reads_the_environment_and_starts_the_command(drifted_platform, day, tmp_path):
    """`fraudops drift check --json` as the CronJob runs it: settings from FRAUDOPS_* only."""
    import os
    import subprocess
    import sys

    marker = tmp_path / "retrain-argv.json"
    env = {**os.environ,
           "FRAUDOPS_HOME": str(tmp_path / "home"),
           "FRAUDOPS_MLFLOW__TRACKING_URI": drifted_platform.tracking_uri,
           "FRAUDOPS_DATABASE__URL": f"sqlite:///{drifted_platform.home / 'fraudops.db'}",
           "FRAUDOPS_DRIFT__LOG_TO_MLFLOW": "false",
           "FRAUDOPS_RETRAIN__CONSECUTIVE_WINDOWS": "1",
           "FRAUDOPS_RETRAIN__LAUNCHER": "command",
           "FRAUDOPS_RETRAIN__WAIT_TIMEOUT_S": "60",
           "FRAUDOPS_RETRAIN__EXTRA_PARAMS": json.dumps({"data_path": "/data/grown.parquet"}),
           "FRAUDOPS_RETRAIN__COMMAND": json.dumps([
               sys.executable, "-c",
               f"import json, sys; print('noise'); json.dump(sys.argv[1:], open({str(marker)!r}, 'w'))"])}
    fraudops = Path(sys.executable).parent / "fraudops"
    end = day(drifted_platform, 29).isoformat()
    done = subprocess.run([str(fraudops), "drift", "check", "--json", "--end", end], env=env,
                          check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert outcome["decision"]["decision"] == "trigger" and outcome["launch"]["launcher"] == "command"
    argv = json.loads(marker.read_text())
    assert argv[-4:-2] == ["--param", "window_end=" + outcome_window_end(outcome)]
    assert argv[-2:] == ["--param", "data_path=/data/grown.parquet"]
    assert (tmp_path / "home" / "drift-reports" / outcome["report_id"] / "report.html").is_file()
    listed = subprocess.run([str(fraudops), "drift", "decisions", "--json"], env=env,
                            check=False, capture_output=True, text=True, timeout=120)
    assert json.loads(listed.stdout.splitlines()[-1])["report_id"] == outcome["report_id"]
    # The logged line is the typed contract the local platform's drift watch parses.
    logged = DecisionLog(str(tmp_path / "home" / "drift-reports")).entries()[-1]
    assert logged.triggered and logged.launch.pid == outcome["launch"]["pid"] > 0


def test_watch_serves_the_drift_metrics(drifted_platform, tmp_path):
    """`fraudops drift watch` (in-process through typer): checks, then /metrics has the figures."""
    import socket

    import httpx
    from typer.testing import CliRunner

    from monitoring.cli import app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"FRAUDOPS_HOME": str(tmp_path),
           "FRAUDOPS_MLFLOW__TRACKING_URI": drifted_platform.tracking_uri,
           "FRAUDOPS_DATABASE__URL": f"sqlite:///{drifted_platform.home / 'fraudops.db'}",
           "FRAUDOPS_DRIFT__LOG_TO_MLFLOW": "false", "FRAUDOPS_RETRAIN__LAUNCHER": "none"}
    result = CliRunner().invoke(app, ["watch", "--max-checks", "1", "--metrics-port", str(port)],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "drift share" in result.output
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "fraud_drift_share " in body and 'fraud_drift_checks_total{outcome="checked"} 1.0' in body
