"""Decision policy: two scores -> approve / review / block.

Block when the sequence model is confident; send to an analyst (review) when it is suspicious
or the autoencoder finds the transaction unusual; approve otherwise. Thresholds are fitted on
validation data by `fraudops.training.policy` and stored with the sequence model.

A cost rule can sit beside the rate thresholds: review when the expected loss (calibrated fraud
probability times the amount) reaches ``review_expected_loss``, fitted from the cost of a
review and the team's daily review capacity. It needs the amounts; without them it is skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fraudops.schema import APPROVE, BLOCK, REVIEW


@dataclass(frozen=True)
class DecisionPolicy:
    """Thresholds on the fraud probability and the normalised anomaly score."""

    block_probability: float = 0.9
    review_probability: float = 0.5
    review_anomaly: float = float("inf")
    #: Review when probability * amount reaches this (money; inf: no cost rule).
    review_expected_loss: float = float("inf")
    #: Reviews per day the team can do (informational; the cost rule was fitted to it).
    daily_review_capacity: int | None = None
    #: How the thresholds were chosen (targets, validation figures); informational.
    fitted: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.review_probability > self.block_probability:
            raise ValueError("review_probability must not exceed block_probability")

    def decide(self, fraud_probability: np.ndarray, anomaly_score: np.ndarray,
               amounts: np.ndarray | None = None) -> np.ndarray:
        """Decision per row as a string array ('approve' | 'review' | 'block')."""
        p = np.asarray(fraud_probability, dtype=np.float64)
        a = np.asarray(anomaly_score, dtype=np.float64)
        out = np.full(p.shape, APPROVE, dtype=object)
        review = (p >= self.review_probability) | (a >= self.review_anomaly)
        if amounts is not None and np.isfinite(self.review_expected_loss):
            review |= p * np.asarray(amounts, dtype=np.float64) >= self.review_expected_loss
        out[review] = REVIEW
        out[p >= self.block_probability] = BLOCK
        return out.astype(str)

    def to_dict(self) -> dict:
        data = asdict(self)
        # JSON has no infinity: an unset threshold is stored as null.
        for key in ("review_anomaly", "review_expected_loss"):
            if not np.isfinite(data[key]):
                data[key] = None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DecisionPolicy:
        values = dict(data)
        for key in ("review_anomaly", "review_expected_loss"):
            if values.get(key) is None:
                values[key] = float("inf")
        return cls(**values)
