"""Calibrated fraud probabilities: the sequence model's output mapped on validation data.

Training fits the mapping (`fraudops.training.calibration`) and stores it with the sequence
model, so serving applies the very same one. Methods:

- ``platt``: logistic regression on the logit of the raw probability and, optionally, the
  autoencoder's anomaly score (the "combiner": the anomaly score then moves the probability
  instead of firing a separate threshold). Strictly monotone in the raw probability.
- ``isotonic``: a monotone step function of the raw probability (stored as its knots).
- ``none``: the raw probability.

Pure numpy in float64, row by row: a row's answer does not depend on its batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METHODS = ("none", "platt", "isotonic")
#: Raw probabilities are clipped this far from 0 and 1 before the logit.
_EPS = 1e-7
#: Anomaly scores enter the combiner clipped: a wild outlier must not saturate it alone.
ANOMALY_CLIP = (-5.0, 30.0)


def logit(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """A fitted map (raw probability, anomaly score) -> calibrated fraud probability."""

    method: str = "none"
    #: platt: weights of (logit, anomaly) and the intercept; anomaly weight 0 when unused.
    weights: tuple[float, float, float] = (1.0, 0.0, 0.0)
    #: isotonic: knots of the step function (raw probability -> probability).
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    uses_anomaly: bool = False
    #: How it was fitted (rows, fraud rows); informational.
    fitted: dict | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; one of {METHODS}")

    def apply(self, probability: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64) for raw probabilities and anomaly scores."""
        p = np.asarray(probability, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(p, self.knots_x, self.knots_y)
        if self.method == "platt":
            a = np.clip(np.asarray(anomaly, dtype=np.float64), *ANOMALY_CLIP)
            w_logit, w_anomaly, bias = self.weights
            z = w_logit * logit(p) + w_anomaly * a + bias
            return 1.0 / (1.0 + np.exp(-z))
        return p

    def to_dict(self) -> dict:
        data = asdict(self)
        data["weights"], data["knots_x"], data["knots_y"] = (
            list(self.weights), list(self.knots_x), list(self.knots_y))
        return data

    @classmethod
    def from_dict(cls, data: dict | None) -> Calibration:
        """A stored calibration; none stored (older checkpoints) means the raw probability."""
        if not data:
            return cls()
        values = dict(data)
        for key in ("weights", "knots_x", "knots_y"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)
