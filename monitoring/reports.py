"""Drift reports on disk (or S3) in the layout the gateway lists, and in MLflow.

    <reports_dir>/<report_id>/report.html    Evidently data + score drift
    <reports_dir>/<report_id>/report.json    the gateway's keys (created_at, dataset_drift,
                                             drift_share, drifted_columns), then "summary"
                                             (all figures), "decision", "evidently"
    <reports_dir>/<report_id>/quality.html   Evidently classification quality (labels arrived)

A local directory by default; any fsspec URL (``s3://bucket/drift``, needs s3fs) in a cluster.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from monitoring.drift_detection import Comparison
from monitoring.exceptions import ReportStorageError

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
QUALITY_HTML = "quality.html"


def render(comparison: Comparison, decision: dict | None, directory: Path) -> list[Path]:
    """Write the report files of `comparison` into a local `directory`; returns them."""
    directory.mkdir(parents=True, exist_ok=True)
    comparison.drift_snapshot.save_html(str(directory / REPORT_HTML))
    files = [directory / REPORT_HTML]
    result = comparison.result
    body: dict[str, Any] = {
        "report_id": result.report_id, "created_at": result.created_at,
        "dataset_drift": bool(decision and decision.get("drifted")),
        "drift_share": result.drift_share, "drifted_columns": result.drifted_features,
        "summary": result.to_dict(), "decision": decision,
        "evidently": comparison.drift_snapshot.dict()}
    if comparison.quality_snapshot is not None:
        comparison.quality_snapshot.save_html(str(directory / QUALITY_HTML))
        body["evidently_quality"] = comparison.quality_snapshot.dict()
        files.append(directory / QUALITY_HTML)
    (directory / REPORT_JSON).write_text(json.dumps(body, indent=1, default=str))
    return files + [directory / REPORT_JSON]


def save(comparison: Comparison, decision: dict | None, reports_dir: str) -> str:
    """Write the report under `reports_dir` (path or fsspec URL); returns its location."""
    report_id = comparison.result.report_id
    if "://" not in reports_dir:
        target = Path(reports_dir) / report_id
        render(comparison, decision, target)
        return str(target)
    with tempfile.TemporaryDirectory(prefix="fraudops-report-") as scratch:
        files = render(comparison, decision, Path(scratch))
        return _upload(files, f"{reports_dir.rstrip('/')}/{report_id}")


def _upload(files: list[Path], url: str) -> str:
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        for file in files:
            fs.put_file(str(file), f"{root}/{file.name}")
    except (ImportError, OSError, ValueError) as error:
        raise ReportStorageError(f"cannot write the drift report to {url}: {error}") from error
    return url


def log_to_mlflow(comparison: Comparison, report_location: str, tracking_uri: str,
                  experiment: str, artifact_location: str) -> str | None:
    """One MLflow run per check: figures as metrics, the report files as artifacts."""
    import mlflow
    from mlflow import MlflowClient

    result = comparison.result
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        client.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"drift-{result.report_id}") as run:
        mlflow.set_tags({"fraudops.kind": "drift-check", "fraudops.report_id": result.report_id,
                         "fraudops.report_location": report_location})
        mlflow.log_metrics(_mlflow_metrics(comparison))
        if "://" not in report_location:
            mlflow.log_artifacts(report_location, artifact_path="drift_report")
        return run.info.run_id


def _mlflow_metrics(comparison: Comparison) -> dict[str, float]:
    result = comparison.result
    figures = {"drift_share": result.drift_share, "window_rows": float(result.current["rows"])}
    for column in result.features + result.scores:
        figures[f"drift.{column.column}"] = column.value
    for side in ("reference", "current"):
        for name, value in (result.quality.get(side) or {}).items():
            if value is not None:
                figures[f"quality.{side}.{name}".replace("@", "_")] = value
    return figures
