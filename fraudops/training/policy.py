"""Fit the decision policy's thresholds on validation data."""

from __future__ import annotations

import numpy as np

from fraudops.models.policy import DecisionPolicy
from fraudops.training.config import PolicyConfig
from fraudops.training.metrics import MICROS_PER_DAY, threshold_at_fpr


def fit_policy(labels: np.ndarray, fraud_probability: np.ndarray, anomaly_score: np.ndarray,
               config: PolicyConfig, amounts: np.ndarray | None = None,
               timestamps_us: np.ndarray | None = None) -> DecisionPolicy:
    """Thresholds meeting the configured false-positive budgets on the given (validation) rows.

    review: probability at `review_fpr`; block: probability at the stricter `block_fpr`;
    anomaly review: autoencoder score at `anomaly_fpr` (catches what the sequence model has
    never seen). Legit rows flagged by either review rule add up, so the total review rate is
    at most review_fpr + anomaly_fpr. With a review cost or a daily capacity (and amounts),
    the cost rule (see `cost_threshold`) adds its reviews.
    """
    labels = np.asarray(labels).astype(np.int64)
    review = threshold_at_fpr(labels, fraud_probability, config.review_fpr)
    block = max(threshold_at_fpr(labels, fraud_probability, config.block_fpr), review)
    anomaly = threshold_at_fpr(labels, anomaly_score, config.anomaly_fpr)
    fitted = {"review_fpr": config.review_fpr, "block_fpr": config.block_fpr,
              "anomaly_fpr": config.anomaly_fpr, "validation_rows": int(labels.size),
              "review_cost": config.review_cost}
    loss = float("inf")
    if amounts is not None:
        loss = cost_threshold(np.asarray(fraud_probability) * np.asarray(amounts), config,
                              timestamps_us)
    return DecisionPolicy(block_probability=float(min(block, 1.0)),
                          review_probability=float(min(review, 1.0)),
                          review_anomaly=float(anomaly), review_expected_loss=loss,
                          daily_review_capacity=config.daily_review_capacity, fitted=fitted)


def cost_threshold(expected_loss: np.ndarray, config: PolicyConfig,
                   timestamps_us: np.ndarray | None) -> float:
    """Expected loss from which a review pays: the review's cost, raised until the rule flags
    at most `daily_review_capacity` rows per day of the given period (inf: no cost rule)."""
    threshold = config.review_cost if config.review_cost is not None else -np.inf
    if config.daily_review_capacity is not None and timestamps_us is not None:
        stamps = np.asarray(timestamps_us, dtype=np.int64)
        days = max(1.0, (stamps.max() - stamps.min()) / MICROS_PER_DAY) if stamps.size else 1.0
        budget = int(config.daily_review_capacity * days)
        ranked = np.sort(np.asarray(expected_loss, dtype=np.float64))[::-1]
        if budget < ranked.size:  # flag strictly above the (budget+1)-th largest loss
            threshold = max(threshold, float(np.nextafter(ranked[budget], np.inf)))
    return float(threshold) if np.isfinite(threshold) else float("inf")
