"""Drift reports on disk, as the drift job writes them.

Layout (agreed with the drift job): one directory per report under the reports directory,

    <reports_dir>/<report_id>/report.html   the Evidently HTML report
    <reports_dir>/<report_id>/report.json   a JSON summary; the gateway lists these optional
                                            top-level keys: created_at (ISO 8601),
                                            dataset_drift (bool), drift_share (float),
                                            drifted_columns (list of str)

`report_id` matches ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` (e.g. ``20260131T120000Z``); reports
are listed newest first (created_at, else the directory's modification time). Ids are checked
before any path is built, so a request cannot leave the reports directory.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.exceptions import ReportNotFoundError
from serving.gateway.schemas import DriftReportSummary

REPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HTML_FILE = "report.html"
JSON_FILE = "report.json"


class DriftReports:
    """Read-only view of the reports directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def list(self) -> list[DriftReportSummary]:
        if not self.directory.is_dir():
            return []
        summaries = [self._summary(p) for p in self.directory.iterdir()
                     if p.is_dir() and REPORT_ID.match(p.name) and self._has_files(p)]
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(summaries, key=lambda s: (s.created_at or epoch, s.report_id), reverse=True)

    def html(self, report_id: str) -> Path:
        path = self._directory(report_id) / HTML_FILE
        if not path.is_file():
            raise ReportNotFoundError(f"report {report_id!r} has no HTML")
        return path

    def document(self, report_id: str) -> dict[str, Any]:
        path = self._directory(report_id) / JSON_FILE
        if not path.is_file():
            raise ReportNotFoundError(f"report {report_id!r} has no JSON summary")
        return _read_json(path)

    def _directory(self, report_id: str) -> Path:
        path = self.directory / report_id
        if not REPORT_ID.match(report_id) or not path.is_dir():
            raise ReportNotFoundError(f"no drift report {report_id!r}")
        return path

    @staticmethod
    def _has_files(path: Path) -> bool:
        return (path / HTML_FILE).is_file() or (path / JSON_FILE).is_file()

    @staticmethod
    def _summary(path: Path) -> DriftReportSummary:
        doc = _read_json(path / JSON_FILE) if (path / JSON_FILE).is_file() else {}
        created = _timestamp(doc.get("created_at")) or datetime.fromtimestamp(
            path.stat().st_mtime, UTC)
        drifted = doc.get("drifted_columns")
        share = doc.get("drift_share")
        flag = doc.get("dataset_drift")
        return DriftReportSummary(
            report_id=path.name, created_at=created,
            dataset_drift=flag if isinstance(flag, bool) else None,
            drift_share=float(share) if isinstance(share, int | float) else None,
            drifted_columns=[str(c) for c in drifted] if isinstance(drifted, list) else None,
            html=(path / HTML_FILE).is_file())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
