"""Fit the decision policy's thresholds on validation data."""

from __future__ import annotations

import numpy as np

from fraudops.models.policy import DecisionPolicy
from fraudops.training.config import PolicyConfig
from fraudops.training.metrics import threshold_at_fpr


def fit_policy(labels: np.ndarray, fraud_probability: np.ndarray, anomaly_score: np.ndarray,
               config: PolicyConfig) -> DecisionPolicy:
    """Thresholds meeting the configured false-positive budgets on the given (validation) rows.

    review: probability at `review_fpr`; block: probability at the stricter `block_fpr`;
    anomaly review: autoencoder score at `anomaly_fpr` (catches what the sequence model has
    never seen). Legit rows flagged by either review rule add up, so the total review rate is
    at most review_fpr + anomaly_fpr.
    """
    labels = np.asarray(labels).astype(np.int64)
    review = threshold_at_fpr(labels, fraud_probability, config.review_fpr)
    block = max(threshold_at_fpr(labels, fraud_probability, config.block_fpr), review)
    anomaly = threshold_at_fpr(labels, anomaly_score, config.anomaly_fpr)
    fitted = {"review_fpr": config.review_fpr, "block_fpr": config.block_fpr,
              "anomaly_fpr": config.anomaly_fpr, "validation_rows": int(labels.size)}
    return DecisionPolicy(block_probability=float(min(block, 1.0)),
                          review_probability=float(min(review, 1.0)),
                          review_anomaly=float(anomaly), fitted=fitted)
