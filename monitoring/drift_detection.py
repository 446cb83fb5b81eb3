"""Compare a current window with the reference: data drift, score drift, quality (Evidently 0.7).

`compare` returns a `DriftResult` (plain figures the policy, the metrics and the gateway use)
and the Evidently snapshots that become the HTML/JSON reports.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.core.datasets import BinaryClassification
from evidently.metrics import ValueDrift
from evidently.presets import ClassificationPreset, DataDriftPreset

from fraudops.features import FeatureSpec
from fraudops.training.metrics import score_metrics
from monitoring.features import drift_frame, window_features
from monitoring.settings import DriftSettings, RetrainPolicySettings
from monitoring.window import ScoredWindow

SCORE_COLUMNS = ("fraud_probability", "anomaly_score")
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift: the method's statistic against its threshold."""

    column: str
    kind: str  # numeric | categorical | score
    method: str
    value: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """Figures of one drift check (serialised into report.json and the decisions log)."""

    report_id: str
    created_at: str
    current: dict
    reference: dict
    features: list[ColumnDrift]
    scores: list[ColumnDrift]
    quality: dict[str, Any] = field(default_factory=dict)
    champion: dict = field(default_factory=dict)

    @property
    def drift_share(self) -> float:
        return sum(c.drifted for c in self.features) / len(self.features) if self.features else 0.0

    @property
    def drifted_features(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["drift_share"] = self.drift_share
        out["drifted_features"] = self.drifted_features
        return out


@dataclass
class Comparison:
    """A `DriftResult` and the Evidently snapshots behind it."""

    result: DriftResult
    drift_snapshot: Any
    quality_snapshot: Any | None = None


def new_report_id(now: datetime | None = None) -> str:
    """Sortable, unique: ``20260124T061500Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def side_frame(window: ScoredWindow, spec: FeatureSpec, settings: DriftSettings) -> pd.DataFrame:
    """Drift columns + scores + labels of the window's rows (lookback rows dropped)."""
    features, rows = window_features(window.frame, spec, window.in_window)
    out = drift_frame(features[rows], spec, settings.numeric_features,
                      settings.categorical_features)
    out["fraud_probability"] = window.fraud_probability[rows]
    out["anomaly_score"] = window.anomaly_score[rows]
    out[LABEL_COLUMN] = window.labels[rows].astype(np.int64)
    return out


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def compare(reference: ScoredWindow, current: ScoredWindow, spec: FeatureSpec,
            settings: DriftSettings, policy: RetrainPolicySettings,
            champion: dict | None = None, holdout: dict[str, float] | None = None
            ) -> Comparison:
    """Run the drift (and, with enough labels, the quality) comparison of two windows.

    `holdout`: the champion's figures on its training run's holdout (out of sample), the
    quality reference when given; otherwise the reference window's figures serve, which are
    optimistic (the champion trained on those rows).
    """
    ref = side_frame(reference, spec, settings)
    cur = side_frame(current, spec, settings)
    snapshot = _drift_report(_sample(ref, settings.sample_rows, settings.seed),
                             _sample(cur, settings.sample_rows, settings.seed), settings)
    features, scores = _column_results(snapshot.dict(), settings)
    quality, quality_snapshot = _quality(ref, cur, policy, holdout)
    result = DriftResult(new_report_id(), datetime.now(UTC).isoformat(), current.describe(),
                         reference.describe(), features, scores, quality, champion or {})
    return Comparison(result, snapshot, quality_snapshot)


def _drift_report(ref: pd.DataFrame, cur: pd.DataFrame, settings: DriftSettings):
    columns = list(settings.numeric_features) + list(settings.categorical_features)
    definition = DataDefinition(
        numerical_columns=list(settings.numeric_features) + list(SCORE_COLUMNS),
        categorical_columns=list(settings.categorical_features))
    metrics = [DataDriftPreset(columns=columns, threshold=settings.column_threshold)]
    metrics += [ValueDrift(column=c) for c in SCORE_COLUMNS]
    keep = columns + list(SCORE_COLUMNS)
    return Report(metrics).run(
        current_data=Dataset.from_pandas(cur[keep], data_definition=definition),
        reference_data=Dataset.from_pandas(ref[keep], data_definition=definition))


def is_drifted(method: str, value: float, threshold: float) -> bool:
    """p-value tests drift below the threshold; distances at or above it (Evidently's rule)."""
    return value < threshold if "p_value" in method else value >= threshold


def _column_results(report: dict, settings: DriftSettings
                    ) -> tuple[list[ColumnDrift], list[ColumnDrift]]:
    kinds = {c: "numeric" for c in settings.numeric_features}
    kinds |= {c: "categorical" for c in settings.categorical_features}
    kinds |= {c: "score" for c in SCORE_COLUMNS}
    seen: dict[str, ColumnDrift] = {}
    for metric in report["metrics"]:
        config = metric["config"]
        if not config.get("type", "").endswith(":ValueDrift") or config["column"] in seen:
            continue
        method, threshold = str(config["method"]), float(config["threshold"])
        value = float(metric["value"])
        seen[config["column"]] = ColumnDrift(config["column"], kinds[config["column"]], method,
                                             value, threshold, is_drifted(method, value, threshold))
    features = [seen[c] for c in kinds if c in seen and kinds[c] != "score"]
    return features, [seen[c] for c in SCORE_COLUMNS if c in seen]


def _quality(ref: pd.DataFrame, cur: pd.DataFrame, policy: RetrainPolicySettings,
             holdout: dict[str, float] | None = None) -> tuple[dict[str, Any], Any | None]:
    """Champion quality on labelled rows of both sides, when enough labels have arrived."""
    ref_l, cur_l = ref[ref[LABEL_COLUMN] >= 0], cur[cur[LABEL_COLUMN] >= 0]
    enough = (len(cur_l) >= policy.min_labelled
              and int(cur_l[LABEL_COLUMN].sum()) >= policy.min_labelled_fraud
              and 0 < int(ref_l[LABEL_COLUMN].sum()) < len(ref_l))
    out: dict[str, Any] = {"labelled": len(cur_l),
                           "labelled_fraud": int(cur_l[LABEL_COLUMN].sum()), "evaluated": enough}
    if not enough:
        return out, None
    for side, rows in (("reference_window", ref_l), ("current", cur_l)):
        figures = score_metrics(rows[LABEL_COLUMN].to_numpy(), rows["fraud_probability"].to_numpy())
        out[side] = {k: (None if np.isnan(v) else float(v)) for k, v in figures.items()}
    logged = bool(holdout) and policy.quality_metric in holdout
    out["reference"] = dict(holdout) if logged else out["reference_window"]
    out["reference_source"] = "champion holdout" if logged else "reference window (in sample)"
    return out, _quality_report(ref_l, cur_l)


def _quality_report(ref: pd.DataFrame, cur: pd.DataFrame):
    definition = DataDefinition(
        numerical_columns=["fraud_probability"], categorical_columns=[LABEL_COLUMN],
        classification=[BinaryClassification(target=LABEL_COLUMN,
                                             prediction_probas="fraud_probability")])
    keep = [LABEL_COLUMN, "fraud_probability"]
    return Report([ClassificationPreset()]).run(
        current_data=Dataset.from_pandas(cur[keep], data_definition=definition),
        reference_data=Dataset.from_pandas(ref[keep], data_definition=definition))
