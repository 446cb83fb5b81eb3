"""Evaluate a scorer on a part of a featurized data set, through the serving code path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudops.models.scorer import Scorer
from fraudops.training.calibration import calibration_metrics
from fraudops.training.dataset import FeatureSet
from fraudops.training.exceptions import TrainingDataError
from fraudops.training.metrics import (
    decision_metrics,
    precision_at_daily_capacity,
    score_metrics,
)

#: Rows gathered into [B, K, F] at a time (bounds memory on large evaluation sets).
EVAL_CHUNK = 16_384


@dataclass
class Evaluation:
    """Scores and metrics of one scorer on one set of labelled rows."""

    labels: np.ndarray
    fraud_probability: np.ndarray
    anomaly_score: np.ndarray
    decision: np.ndarray
    amounts: np.ndarray
    scenarios: np.ndarray
    metrics: dict[str, float]
    #: The gradient-boosted reference's probabilities on the same rows (None: not trained).
    reference_probability: np.ndarray | None = None
    #: Event times (microseconds since the epoch) of the rows.
    timestamps: np.ndarray | None = None
    #: Reviews per day of the policy (the capacity figures use it; None: not configured).
    daily_review_capacity: int | None = None

    def headline(self, metric: str = "auprc") -> float:
        """The sequence model's value of `metric` (what the promotion gate compares)."""
        return self.metrics[f"sequence.{metric}"]


def score_rows(scorer: Scorer, data: FeatureSet, rows: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fraud probability, anomaly score, decision) of `rows` via `Scorer.score`."""
    parts = []
    for start in range(0, len(rows), EVAL_CHUNK):
        result = scorer.score(*data.sequences(rows[start:start + EVAL_CHUNK]))
        parts.append((result.fraud_probability, result.anomaly_score, result.decision))
    if not parts:
        return np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, str)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def evaluate(scorer: Scorer, data: FeatureSet, rows: np.ndarray) -> Evaluation:
    """Metrics of both scores and of the decisions on the labelled subset of `rows`."""
    rows = data.labelled(rows)
    if len(rows) == 0:
        raise TrainingDataError("no labelled rows to evaluate on")
    probability, anomaly, decision = score_rows(scorer, data, rows)
    labels, amounts = data.labels[rows].astype(np.int64), data.amounts[rows]
    scenarios = data.scenarios[rows] if (data.scenarios[rows] != "").any() else None
    metrics = {"rows": float(len(rows)), "fraud_rate": float(labels.mean())}
    for prefix, values in (("sequence", probability), ("autoencoder", anomaly)):
        for name, value in score_metrics(labels, values, amounts, scenarios).items():
            metrics[f"{prefix}.{name}"] = value
    for name, value in decision_metrics(labels, decision, amounts, scenarios).items():
        metrics[f"policy.{name}"] = value
    result = Evaluation(labels, probability, anomaly, decision, amounts, data.scenarios[rows],
                        metrics, timestamps=data.timestamps[rows],
                        daily_review_capacity=scorer.policy.daily_review_capacity)
    metrics.update(probability_metrics(result, "sequence", probability))
    return result


def probability_metrics(result: Evaluation, prefix: str, probability: np.ndarray
                        ) -> dict[str, float]:
    """How well `probability` is calibrated, and (with a review capacity) the precision of a
    team reviewing each day's highest-scored rows up to that capacity."""
    out = {f"{prefix}.{k}": v for k, v in calibration_metrics(result.labels, probability).items()}
    if result.daily_review_capacity and result.timestamps is not None:
        out[f"{prefix}.precision_at_daily_capacity"] = precision_at_daily_capacity(
            result.labels, probability, result.timestamps, result.daily_review_capacity)
    return out
