"""Fit the probability calibration on validation data (scikit-learn), see `models.calibration`."""

from __future__ import annotations

import numpy as np

from fraudops.models.calibration import ANOMALY_CLIP, Calibration, logit
from fraudops.training.config import CalibrationConfig


def fit_calibration(labels: np.ndarray, probability: np.ndarray, anomaly: np.ndarray,
                    config: CalibrationConfig) -> Calibration:
    """The configured calibration fitted on (validation) labels and raw scores."""
    labels = np.asarray(labels).astype(np.int64)
    fitted = {"rows": int(labels.size), "fraud_rows": int(labels.sum())}
    if config.method == "isotonic":
        return _isotonic(labels, probability, fitted)
    if config.method == "platt":
        return _platt(labels, probability, anomaly, config.use_anomaly, fitted)
    return Calibration()


def _isotonic(labels, probability, fitted) -> Calibration:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit(np.asarray(probability, dtype=np.float64), labels)
    return Calibration("isotonic", knots_x=tuple(map(float, model.X_thresholds_)),
                       knots_y=tuple(map(float, model.y_thresholds_)), fitted=fitted)


def _platt(labels, probability, anomaly, use_anomaly: bool, fitted) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    columns = [logit(probability)]
    if use_anomaly:
        columns.append(np.clip(np.asarray(anomaly, dtype=np.float64), *ANOMALY_CLIP))
    # Nearly unregularised: a handful of parameters on thousands of rows.
    model = LogisticRegression(C=1e4, max_iter=1000).fit(np.column_stack(columns), labels)
    coef = [float(c) for c in model.coef_[0]]
    weights = (coef[0], coef[1] if use_anomaly else 0.0, float(model.intercept_[0]))
    return Calibration("platt", weights=weights, uses_anomaly=use_anomaly, fitted=fitted)


def calibration_metrics(labels: np.ndarray, probability: np.ndarray, bins: int = 10
                        ) -> dict[str, float]:
    """Brier score and expected calibration error (equal-count bins) of probabilities."""
    from sklearn.metrics import brier_score_loss

    labels = np.asarray(labels).astype(np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    order = np.argsort(probability, kind="stable")
    error = sum(abs(probability[part].mean() - labels[part].mean()) * len(part)
                for part in np.array_split(order, bins) if len(part))
    return {"brier": float(brier_score_loss(labels, probability)),
            "calibration_error": float(error / max(len(labels), 1))}
