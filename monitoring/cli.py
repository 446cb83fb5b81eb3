"""`fraudops drift ...`: check a window for drift (and maybe retrain), watch, read decisions.

Settings come from the environment (``FRAUDOPS_DRIFT__*``, ``FRAUDOPS_RETRAIN__*``,
``FRAUDOPS_KFP__*``); options override them for local use. Heavy imports (evidently, mlflow,
torch) happen inside the commands.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Annotated

import typer

app = typer.Typer(help="Drift checks, the retraining policy and its decisions log.",
                  no_args_is_help=True)

WindowOption = Annotated[float | None, typer.Option(help="Window length in hours.")]
EndOption = Annotated[datetime | None, typer.Option(
    help="Window end (event time, UTC); default: the newest scored event.")]
ReferenceOption = Annotated[str | None, typer.Option(
    help="Fallback reference data set (Parquet/CSV) for a champion without usable lineage.")]
TriggerOption = Annotated[bool | None, typer.Option(
    "--trigger/--no-trigger", help="Start retraining when the policy says so.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]


def _settings(window: float | None, reference: str | None, trigger: bool | None):
    from monitoring.settings import MonitoringSettings

    settings = MonitoringSettings()
    overrides = {"window": timedelta(hours=window) if window else None,
                 "reference_path": reference, "trigger_retraining": trigger}
    drift = settings.drift.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    return settings.model_copy(update={"drift": drift})


def _job(settings):
    from mlflow import MlflowClient

    from fraudops.store import SchemaNotCurrentError, Store
    from monitoring.job import DriftJob
    from monitoring.trigger import build_launcher

    try:  # as the consumer and the gateway: a store not at this release's schema is refused
        store = Store.open_current(settings.database.resolved_url(settings.home))
    except SchemaNotCurrentError as error:  # the message names `fraudops db upgrade`
        typer.secho(f"drift: {error}", fg="red", err=True)
        raise typer.Exit(2) from error
    tracking_uri = settings.mlflow.resolved_tracking_uri(settings.home)
    registry = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    launcher = build_launcher(settings.retrain, settings.kfp)
    return DriftJob(settings, store, registry, launcher)


def _print(outcome, as_json: bool) -> None:
    from dataclasses import asdict

    body = asdict(outcome)
    if as_json:
        typer.echo(json.dumps(body, default=str, indent=1))
        return
    if outcome.status == "skipped":
        typer.secho(f"skipped: {outcome.detail}", fg="yellow")
        return
    decision = outcome.decision
    typer.echo(f"report {outcome.report_id} -> {outcome.report_location}")
    typer.echo(f"drift share {outcome.drift_share:.2f}; drifted: "
               f"{', '.join(outcome.drifted_features) or 'none'}")
    typer.secho(f"{decision.decision} ({decision.reason}): {decision.detail}",
                fg="red" if decision.triggered else "green")
    if outcome.launch:
        launch = outcome.launch
        handle = f"pid {launch.pid}" if launch.pid is not None else launch.run_id
        typer.echo(f"retraining started: {launch.launcher} {handle}")
    if outcome.launch_error or outcome.detail:
        typer.secho(outcome.launch_error or outcome.detail, fg="yellow")
    typer.echo(f"took {outcome.seconds:.1f} s {outcome.timings}")


@app.command()
def check(window: WindowOption = None, end: EndOption = None, reference: ReferenceOption = None,
          trigger: TriggerOption = None, as_json: JsonOption = False) -> None:
    """Compare the latest scored window with the champion's reference; apply the policy."""
    from monitoring.exceptions import MonitoringError

    settings = _settings(window, reference, trigger)
    try:
        outcome = _job(settings).check(end)
    except MonitoringError as error:
        typer.secho(f"drift check: {error}", fg="red", err=True)
        raise typer.Exit(2) from error
    _print(outcome, as_json)


@app.command()
def watch(interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 300.0,
          metrics_port: Annotated[int, typer.Option(help="Port of /metrics; 0 = none.")] = 9108,
          window: WindowOption = None, reference: ReferenceOption = None,
          trigger: TriggerOption = None,
          max_checks: Annotated[int, typer.Option(help="Stop after this many; 0 = never.")] = 0,
          ) -> None:
    """Check repeatedly (local platform) and serve the drift metrics on /metrics."""
    from monitoring.exceptions import MonitoringError

    job = _job(_settings(window, reference, trigger))
    if metrics_port:
        job.metrics.serve(metrics_port)
    done = 0
    while True:
        try:
            _print(job.check(), as_json=False)
        except MonitoringError as error:  # e.g. no champion yet: keep watching
            job.metrics.checks.labels("failed").inc()
            typer.secho(f"drift check: {error}", fg="yellow", err=True)
        done += 1
        if max_checks and done >= max_checks:
            return
        time.sleep(interval)


@app.command()
def decisions(last: Annotated[int, typer.Option(help="How many entries.")] = 20,
              as_json: JsonOption = False) -> None:
    """Show the latest entries of the decisions log (trigger or not, and why)."""
    from monitoring.decisions import DecisionLog
    from monitoring.settings import MonitoringSettings

    settings = MonitoringSettings()
    entries = DecisionLog(settings.drift.resolved_reports_dir(settings.home)).entries()[-last:]
    for entry in entries:
        if as_json:
            typer.echo(entry.model_dump_json())
        else:
            typer.echo(f"{entry.decided_at.isoformat()} {entry.decision} ({entry.reason}): "
                       f"{entry.detail}")
