"""Decision policy: two scores -> approve / review / block.

Block when the sequence model is confident; send to an analyst (review) when it is suspicious
or the autoencoder finds the transaction unusual; approve otherwise. Thresholds are fitted on
validation data by `fraudops.training.policy` and stored with the sequence model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

APPROVE, REVIEW, BLOCK = "approve", "review", "block"
DECISIONS = (APPROVE, REVIEW, BLOCK)


@dataclass(frozen=True)
class DecisionPolicy:
    """Thresholds on the fraud probability and the normalised anomaly score."""

    block_probability: float = 0.9
    review_probability: float = 0.5
    review_anomaly: float = float("inf")
    #: How the thresholds were chosen (targets, validation figures); informational.
    fitted: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.review_probability > self.block_probability:
            raise ValueError("review_probability must not exceed block_probability")

    def decide(self, fraud_probability: np.ndarray, anomaly_score: np.ndarray) -> np.ndarray:
        """Decision per row as a string array ('approve' | 'review' | 'block')."""
        p = np.asarray(fraud_probability, dtype=np.float64)
        a = np.asarray(anomaly_score, dtype=np.float64)
        out = np.full(p.shape, APPROVE, dtype=object)
        out[(p >= self.review_probability) | (a >= self.review_anomaly)] = REVIEW
        out[p >= self.block_probability] = BLOCK
        return out.astype(str)

    def to_dict(self) -> dict:
        data = asdict(self)
        # JSON has no infinity: an unset anomaly threshold is stored as null.
        if not np.isfinite(self.review_anomaly):
            data["review_anomaly"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DecisionPolicy:
        values = dict(data)
        if values.get("review_anomaly") is None:
            values["review_anomaly"] = float("inf")
        return cls(**values)
